using System.Text.RegularExpressions;
using Fleet.Api.Security;
using Fleet.UnitTests.Deployment;

namespace Fleet.UnitTests.Docs;

/// <summary>
/// Keeps README.md and docs/ honest: what they link, and the commands, make targets and HTTP routes they name,
/// exist; and nothing in the repository points at design files that are not in it.
/// </summary>
public sealed partial class DocsTests
{
    private static readonly string Root = DeploymentFiles.Root;
    private static readonly Lazy<IReadOnlyList<MarkdownDoc>> Docs = new(() => MarkdownDoc.LoadAll(Root));

    [Fact]
    public void RelativeLinks_ResolveToFilesInTheRepository_AndToHeadings()
    {
        var broken = new List<string>();
        foreach (var doc in Docs.Value)
        {
            foreach (var (line, target) in doc.Links)
            {
                if (target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal))
                {
                    continue;
                }

                var hash = target.IndexOf('#', StringComparison.Ordinal);
                var file = hash < 0 ? target : target[..hash];
                var anchor = hash < 0 ? null : target[(hash + 1)..];
                var full = file.Length == 0
                    ? Path.Combine(Root, doc.RelativePath)
                    : Path.GetFullPath(Path.Combine(Root, Path.GetDirectoryName(doc.RelativePath)!, Uri.UnescapeDataString(file)));
                var relative = Path.GetRelativePath(Root, full).Replace('\\', '/');
                if (relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative))
                {
                    broken.Add($"{doc.RelativePath}:{line}: {target} leaves the repository");
                }
                else if (!File.Exists(full) && !Directory.Exists(full))
                {
                    broken.Add($"{doc.RelativePath}:{line}: {target}: no such file");
                }
                else if (anchor is not null && full.EndsWith(".md", StringComparison.Ordinal)
                    && !MarkdownDoc.Load(Root, relative).Anchors.Contains(anchor))
                {
                    broken.Add($"{doc.RelativePath}:{line}: {target}: no heading #{anchor} in {relative}");
                }
            }
        }

        Assert.True(broken.Count == 0, "Broken links:\n" + string.Join("\n", broken));
    }

    [Fact]
    public void FleetCommands_NamedInTheDocs_ExistWithTheirOptions()
    {
        var commands = RealFleet.CliCommands(Root);
        var wrong = new List<string>();
        foreach (var (doc, line, verb, rest) in Named(FleetCommand()))
        {
            if (!commands.TryGetValue(verb, out var command))
            {
                wrong.Add($"{doc}:{line}: fleet {verb}: no such command (the CLI has {string.Join(", ", commands.Keys.Order(StringComparer.Ordinal))})");
                continue;
            }

            var options = RealFleet.OptionNames(command);
            wrong.AddRange(OptionToken().Matches(rest).Select(m => m.Groups[1].Value)
                .Where(o => !options.Contains(o))
                .Select(o => $"{doc}:{line}: fleet {verb} has no option {o}"));
        }

        Assert.True(wrong.Count == 0, "CLI commands the docs name but the CLI lacks:\n" + string.Join("\n", wrong));
    }

    [Fact]
    public void MakeTargets_NamedInTheDocs_ExistInTheMakefile()
    {
        var targets = RealFleet.MakeTargets(Root);
        var missing = Named(MakeCommand())
            .Where(n => !targets.Contains(n.Word))
            .Select(n => $"{n.Doc}:{n.Line}: make {n.Word}")
            .ToList();

        Assert.True(missing.Count == 0, "make targets the docs name but the Makefile lacks:\n" + string.Join("\n", missing));
    }

    [Fact]
    public async Task HttpRoutes_NamedInTheDocs_ExistInTheApi()
    {
        var routes = await RealFleet.ApiRoutesAsync(readsRequireKey: false);
        var missing = HttpMentions(Docs.Value)
            .Where(m => !routes.Any(r => r.Matches(m.Method, m.Path)))
            .Select(m => $"{m.Doc}:{m.Line}: {m.Method} {m.Path}")
            .ToList();

        Assert.True(missing.Count == 0, "HTTP routes the docs name but the API does not map:\n" + string.Join("\n", missing));
    }

    /// <summary>
    /// docs/http-api.md lists every endpoint in one table, <c>| `METHOD /path` | admin/write/read/open | ...</c>: the
    /// scope the route's key needs ("open": none). "read" routes, and only they, open with <c>Api:ReadsRequireKey</c>
    /// false.
    /// </summary>
    [Fact]
    public async Task HttpReference_ListsEveryRoute_WithItsScope()
    {
        var closed = await RealFleet.ApiRoutesAsync(readsRequireKey: true);
        var open = await RealFleet.ApiRoutesAsync(readsRequireKey: false);
        var rows = Docs.Value.Single(d => d.RelativePath == "docs/http-api.md").AllLines
            .Select(l => RouteRow().Match(l.Text))
            .Where(m => m.Success)
            .Select(m => (Method: m.Groups[1].Value, Path: m.Groups[2].Value, Key: m.Groups[3].Value))
            .ToList();
        var wrong = new List<string>();
        foreach (var route in closed)
        {
            var method = route.Methods.Count == 0 ? "GET" : route.Methods[0];
            var row = rows.FirstOrDefault(r => r.Method == method && route.Matches(r.Method, r.Path));
            if (row.Path is null)
            {
                wrong.Add($"{method} {route.Template}: not in the route table");
                continue;
            }

            var actual = route.Scope ?? "open";
            if (row.Key != actual)
            {
                wrong.Add($"{method} {row.Path}: the table says '{row.Key}', the API's rule is '{actual}'");
            }

            var opened = open.Single(o => o.Template == route.Template && o.Methods.SequenceEqual(route.Methods)).Scope;
            if (opened != (route.Scope == ApiScopes.Read ? null : route.Scope))
            {
                wrong.Add($"{method} {row.Path}: with Api:ReadsRequireKey false its scope is '{opened ?? "open"}', expected only reads to open");
            }
        }

        Assert.True(rows.Count > 0, "docs/http-api.md has no route table");
        Assert.True(wrong.Count == 0, "docs/http-api.md's route table:\n" + string.Join("\n", wrong));
    }

    [Fact]
    public void NothingPointsAtDesignFilesOutsideTheRepository()
    {
        // Built from parts so that this file does not name them itself.
        string[] absent = ["WORKLOADS" + ".md", "DESIGN" + ".md", "STYLE" + ".md"];
        var hits = RepositoryTextFiles()
            .SelectMany(f => File.ReadLines(Path.Combine(Root, f)).Select((text, i) => (File: f, Line: i + 1, Text: text)))
            .Where(l => absent.Any(a => l.Text.Contains(a, StringComparison.Ordinal)))
            .Select(l => $"{l.File}:{l.Line}: {l.Text.Trim()}")
            .ToList();

        Assert.True(hits.Count == 0, "References to files that are not in the repository:\n" + string.Join("\n", hits));
    }

    [Fact]
    public void Docs_DoNotCiteIssueNumbers()
    {
        var hits = Docs.Value
            .SelectMany(d => d.AllLines.Where(l => IssueNumber().IsMatch(l.Text)).Select(l => $"{d.RelativePath}:{l.Line}: {l.Text.Trim()}"))
            .ToList();

        Assert.True(hits.Count == 0, "Issue numbers mean nothing to a reader of the repository:\n" + string.Join("\n", hits));
    }

    /// <summary>The broken-link check fails on a broken link (a guard against a check that never looks).</summary>
    [Fact]
    public void TheChecksSeeWhatTheyCheck()
    {
        var readme = Docs.Value.Single(d => d.RelativePath == "README.md");
        Assert.Contains(readme.Links, l => l.Target.StartsWith("docs/", StringComparison.Ordinal));
        Assert.Contains(Named(MakeCommand()), n => n.Word == "demo");
        Assert.Contains(Named(FleetCommand()), n => n.Word == "submit");
        Assert.Contains(HttpMentions(Docs.Value), m => m.Method == "POST" && m.Path == "/tasks");
        Assert.False(new ApiRoute("/tasks/{id:guid}", ["GET"], null).Matches("GET", "/tasks/{id}/cancel"));
        Assert.True(new ApiRoute("/openapi/{documentName}.json", ["GET"], null).Matches("GET", "/openapi/v1.json"));
    }

    /// <summary>Commands of one program named in code: inline spans that start with it, and lines of shell blocks.</summary>
    private static IEnumerable<(string Doc, int Line, string Word, string Arguments)> Named(Regex command) =>
        Docs.Value.SelectMany(d =>
            d.CodeSpans.Select(s => (s.Line, Text: "^" + s.Text))
                .Where(s => command.IsMatch(s.Text) && command.Match(s.Text).Index == 0)
                .Concat(d.ShellLines.Select(s => (s.Line, s.Text)))
                .SelectMany(s => command.Matches(s.Text).Select(m => (d.RelativePath, s.Line, m.Groups[1].Value, m.Groups[2].Value))));

    /// <summary>
    /// HTTP requests the docs name: <c>METHOD /path</c> anywhere, and curl calls on <c>$FLEET_API_URL</c> (GET
    /// unless <c>-X</c> says otherwise). The query string is not part of the route.
    /// </summary>
    private static IEnumerable<(string Doc, int Line, string Method, string Path)> HttpMentions(IEnumerable<MarkdownDoc> docs) =>
        docs.SelectMany(d => d.AllLines.SelectMany(l =>
            MethodAndPath().Matches(l.Text).Select(m => (d.RelativePath, l.Line, m.Groups[1].Value, m.Groups[2].Value))
                .Concat(CurlPath().Matches(l.Text).Select(m => (d.RelativePath, l.Line, CurlMethod().Match(l.Text) is { Success: true } x ? x.Groups[1].Value : "GET", m.Groups[1].Value)))
                .Where(m => m.Item4.Trim('/').Length > 0)));

    private static IEnumerable<string> RepositoryTextFiles()
    {
        string[] skipped = [".git", "bin", "obj", "TestResults", ".fleet", "node_modules"];
        string[] extensions = [".cs", ".md", ".sh", ".py", ".json", ".yml", ".yaml", ".props", ".csproj", ".sln", ".js", ".html", ".css", ".sql", ".txt", ".toml", ".conf", ""];
        var pending = new Stack<string>([Root]);
        while (pending.Count > 0)
        {
            var directory = pending.Pop();
            foreach (var sub in Directory.EnumerateDirectories(directory).Where(s => !skipped.Contains(Path.GetFileName(s))))
            {
                pending.Push(sub);
            }

            foreach (var file in Directory.EnumerateFiles(directory).Where(f => extensions.Contains(Path.GetExtension(f)) || Path.GetFileName(f).StartsWith("Dockerfile", StringComparison.Ordinal)))
            {
                if (new FileInfo(file).Length < 4_000_000)
                {
                    yield return Path.GetRelativePath(Root, file);
                }
            }
        }
    }

    // "fleet submit --wait" in a code span or a shell line; not "fleet-bench", "fleet.tasks", "$FLEET_HOME/fleet",
    // nor an option's value ("kubectl -n fleet apply").
    [GeneratedRegex(@"(?:^\^|(?<![\w./$=-])(?<!\s-[\w-]*[ \t]+))fleet[ \t]+([a-z][a-z-]*)([^|;&#]*)")]
    private static partial Regex FleetCommand();

    [GeneratedRegex(@"(?:^\^|(?<![\w./$=-]))make[ \t]+([a-z][a-z0-9-]*)()")]
    private static partial Regex MakeCommand();

    [GeneratedRegex(@"(?<=\s|^)(--?[a-zA-Z?][a-z-]*)")]
    private static partial Regex OptionToken();

    [GeneratedRegex(@"\b(GET|POST|PUT|PATCH|DELETE)[ \t]+(/[A-Za-z0-9_{}./:$-]*)")]
    private static partial Regex MethodAndPath();

    [GeneratedRegex(@"\$\{?FLEET_API_URL\}?(/[A-Za-z0-9_{}./:$-]*)")]
    private static partial Regex CurlPath();

    [GeneratedRegex(@"-X[ \t]+([A-Z]+)")]
    private static partial Regex CurlMethod();

    [GeneratedRegex(@"^\|\s*`(GET|POST|PUT|PATCH|DELETE) (/[^`?]*)`\s*\|\s*(\w+)\s*\|")]
    private static partial Regex RouteRow();

    [GeneratedRegex(@"\bissues?\s+#?\d+", RegexOptions.IgnoreCase)]
    private static partial Regex IssueNumber();
}
