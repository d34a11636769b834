using System.Text;
using System.Text.RegularExpressions;

namespace Fleet.UnitTests.Docs;

/// <summary>
/// One Markdown file of the repository, split the way the docs tests need it: links and headings from the prose,
/// commands from the code (fenced shell blocks and inline code spans), so that "the fleet database" in a sentence
/// is not taken for a <c>fleet</c> command.
/// </summary>
internal sealed partial class MarkdownDoc
{
    private static readonly HashSet<string> ShellFences = new(StringComparer.OrdinalIgnoreCase) { "", "sh", "bash", "shell", "console" };

    private MarkdownDoc(string relativePath, string text)
    {
        RelativePath = relativePath;
        var prose = new List<(int, string)>();
        var shell = new List<(int, string)>();
        var spans = new List<(int, string)>();
        var headings = new List<string>();
        string? fence = null;
        var number = 0;
        foreach (var line in text.Split('\n'))
        {
            number++;
            var trimmed = line.TrimStart();
            if (trimmed.StartsWith("```", StringComparison.Ordinal))
            {
                fence = fence is null ? trimmed[3..].Trim() : null;
                continue;
            }

            if (fence is not null)
            {
                if (ShellFences.Contains(fence))
                {
                    shell.Add((number, ShellComment().Replace(line, "")));
                }

                continue;
            }

            foreach (Match span in CodeSpan().Matches(line))
            {
                spans.Add((number, span.Groups[1].Value));
            }

            headings.Add(line);
            prose.Add((number, CodeSpan().Replace(line, "``")));
        }

        AllLines = text.Split('\n').Select((l, i) => (i + 1, l)).ToList();
        ProseLines = prose;
        ShellLines = shell;
        CodeSpans = spans;
        Anchors = HeadingAnchors(headings);
    }

    public string RelativePath { get; }

    public IReadOnlyList<(int Line, string Text)> AllLines { get; }

    /// <summary>Lines outside fenced blocks, with inline code blanked out.</summary>
    public IReadOnlyList<(int Line, string Text)> ProseLines { get; }

    /// <summary>Lines of fenced shell blocks (or blocks without a language), comments removed.</summary>
    public IReadOnlyList<(int Line, string Text)> ShellLines { get; }

    /// <summary>The text of every inline code span outside fenced blocks.</summary>
    public IReadOnlyList<(int Line, string Text)> CodeSpans { get; }

    /// <summary>The anchors GitHub gives the file's headings.</summary>
    public IReadOnlySet<string> Anchors { get; }

    /// <summary>Link targets <c>[text](target)</c> in the prose.</summary>
    public IEnumerable<(int Line, string Target)> Links =>
        ProseLines.SelectMany(l => Link().Matches(l.Text).Select(m => (l.Line, m.Groups[1].Value)));

    public static MarkdownDoc Load(string root, string relativePath) =>
        new(relativePath, File.ReadAllText(Path.Combine(root, relativePath)).Replace("\r\n", "\n", StringComparison.Ordinal));

    /// <summary>README.md and every Markdown file under docs/, as paths relative to the repository root.</summary>
    public static IReadOnlyList<MarkdownDoc> LoadAll(string root) =>
        Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(root, p).Replace('\\', '/'))
            .Prepend("README.md")
            .Order(StringComparer.Ordinal)
            .Select(p => Load(root, p))
            .ToList();

    /// <summary>GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens, repeats numbered.</summary>
    private static HashSet<string> HeadingAnchors(IEnumerable<string> lines)
    {
        var anchors = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            var heading = Heading().Match(line);
            if (!heading.Success)
            {
                continue;
            }

            var slug = new StringBuilder();
            foreach (var c in heading.Groups[1].Value.Trim().ToLowerInvariant())
            {
                if (char.IsLetterOrDigit(c) || c is '-' or '_')
                {
                    slug.Append(c);
                }
                else if (c == ' ')
                {
                    slug.Append('-');
                }
            }

            var anchor = slug.ToString();
            for (var n = 1; !anchors.Add(anchor); n++)
            {
                anchor = $"{slug}-{n}";
            }
        }

        return anchors;
    }

    [GeneratedRegex("`([^`]+)`")]
    private static partial Regex CodeSpan();

    // A shell comment: '#' at the start or after a blank ("$#" and "a#b" are not comments).
    [GeneratedRegex(@"(^|\s)#.*$")]
    private static partial Regex ShellComment();

    [GeneratedRegex(@"!?\[[^\]]*\]\(([^)\s]+)(?:\s+""[^""]*"")?\)")]
    private static partial Regex Link();

    [GeneratedRegex(@"^#{1,6}\s+(.+?)\s*#*\s*$")]
    private static partial Regex Heading();
}
