using System.Text.Json;
using System.Text.RegularExpressions;

namespace Fleet.UnitTests.Deployment;

/// <summary>One instruction of a Dockerfile: <c>COPY a b</c> is ("COPY", "a b"). Continuation lines are joined.</summary>
public sealed record DockerInstruction(string Keyword, string Arguments)
{
    /// <summary>The arguments of the exec (JSON array) form, e.g. <c>ENTRYPOINT ["dotnet", "x.dll"]</c>.</summary>
    public string[] ExecForm(string? afterPrefix = null)
    {
        var text = afterPrefix is null ? Arguments : Arguments[Arguments.IndexOf(afterPrefix, StringComparison.Ordinal)..][afterPrefix.Length..];
        return JsonSerializer.Deserialize<string[]>(text.Trim()) ?? [];
    }
}

/// <summary>A build stage: <c>FROM image AS name</c> and what follows it.</summary>
public sealed record DockerStage(string Image, string? Name, IReadOnlyList<DockerInstruction> Instructions)
{
    public IEnumerable<DockerInstruction> All(string keyword) => Instructions.Where(i => i.Keyword == keyword);

    public DockerInstruction? Last(string keyword) => All(keyword).LastOrDefault();
}

/// <summary>Just enough of the Dockerfile syntax to check Fleet's three Dockerfiles against the repository.</summary>
public sealed partial class DockerfileModel
{
    private DockerfileModel(string path, IReadOnlyList<DockerStage> stages)
    {
        Path = path;
        Stages = stages;
    }

    public string Path { get; }

    public IReadOnlyList<DockerStage> Stages { get; }

    public DockerStage Final => Stages[^1];

    /// <summary>The variables the final stage sets with ENV (<c>ENV A=1 B=</c>).</summary>
    public IReadOnlyDictionary<string, string> FinalStageEnvironment =>
        Final.All("ENV").SelectMany(e => EnvPair().Matches(e.Arguments))
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value.Trim('"'), StringComparer.Ordinal);

    public static DockerfileModel Load(string relativePath)
    {
        var instructions = new List<DockerInstruction>();
        var pending = "";
        foreach (var raw in DeploymentFiles.Read(relativePath).Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (pending.Length == 0 && (line.TrimStart().StartsWith('#') || line.Trim().Length == 0))
            {
                continue;
            }

            if (line.EndsWith('\\'))
            {
                pending += line[..^1] + " ";
                continue;
            }

            var full = (pending + line).Trim();
            pending = "";
            var space = full.IndexOf(' ', StringComparison.Ordinal);
            instructions.Add(new DockerInstruction(full[..space].ToUpperInvariant(), full[(space + 1)..].Trim()));
        }

        var stages = new List<(string Image, string? Name, List<DockerInstruction> Body)>();
        foreach (var instruction in instructions)
        {
            if (instruction.Keyword == "FROM")
            {
                var parts = instruction.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                stages.Add((parts[0], parts.Length == 3 && parts[1].Equals("AS", StringComparison.OrdinalIgnoreCase) ? parts[2] : null, []));
            }
            else
            {
                Assert.True(stages.Count > 0, $"{relativePath}: {instruction.Keyword} before the first FROM");
                stages[^1].Body.Add(instruction);
            }
        }

        return new DockerfileModel(relativePath, [.. stages.Select(s => new DockerStage(s.Image, s.Name, s.Body))]);
    }

    [GeneratedRegex(@"([A-Za-z_][A-Za-z0-9_.]*)=(""[^""]*""|\S*)")]
    private static partial Regex EnvPair();
}
