using System.Text.RegularExpressions;
using System.Xml.Linq;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Fleet.UnitTests.Deployment;

/// <summary>One deployable process: its project, its Dockerfile, and its names in compose and Kubernetes.</summary>
public sealed record FleetApp(string Name, string Project, string Dockerfile, string ComposeService, string Workload, string Image)
{
    public static readonly FleetApp Api = new("api", "src/Fleet.Api/Fleet.Api.csproj", "src/Fleet.Api/Dockerfile", "api", "fleet-api", "fleet-api");

    public static readonly FleetApp Worker = new("worker", "src/Fleet.Worker/Fleet.Worker.csproj", "src/Fleet.Worker/Dockerfile", "worker", "fleet-worker", "fleet-worker");

    /// <summary>The CLI image, whose default command is <c>fleet migrate</c>; in Kubernetes a Job.</summary>
    public static readonly FleetApp Migrator = new("migrator", "src/Fleet.Cli/Fleet.Cli.csproj", "src/Fleet.Cli/Dockerfile", "migrator", "fleet-migrate", "fleet-migrator");

    public static readonly FleetApp[] All = [Api, Worker, Migrator];

    public static FleetApp Named(string name) => All.Single(a => a.Name == name);

    /// <summary>The port the process listens on in its image (its Dockerfile's ENV), unless <paramref name="environment"/> overrides it.</summary>
    public int ListenPort(IReadOnlyDictionary<string, string>? environment = null)
    {
        var env = new Dictionary<string, string>(DockerfileModel.Load(Dockerfile).FinalStageEnvironment, StringComparer.Ordinal);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        // ASP.NET Core: URLS wins over HTTP_PORTS.
        if (env.TryGetValue("ASPNETCORE_URLS", out var urls) && urls.Length > 0)
        {
            var match = Regex.Match(urls.Split(';')[0], @":(\d+)/?$");
            Assert.True(match.Success, $"{Name}: ASPNETCORE_URLS '{urls}' names no port");
            return int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }

        Assert.True(env.TryGetValue("ASPNETCORE_HTTP_PORTS", out var ports) && ports.Length > 0, $"{Name}: no ASPNETCORE_URLS or ASPNETCORE_HTTP_PORTS");
        return int.Parse(ports!.Split(';')[0], System.Globalization.CultureInfo.InvariantCulture);
    }
}

/// <summary>Files of the repository, found from the test's build output (the folder with Fleet.sln).</summary>
public static class DeploymentFiles
{
    private static readonly Lazy<string> RootPath = new(() =>
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Fleet.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Fleet.sln not found above " + AppContext.BaseDirectory);
    });

    public static string Root => RootPath.Value;

    public static string PathOf(string relative) => Path.Combine(Root, relative.Replace('/', Path.DirectorySeparatorChar));

    public static bool Exists(string relative) => File.Exists(PathOf(relative)) || Directory.Exists(PathOf(relative));

    public static string Read(string relative) => File.ReadAllText(PathOf(relative));

    /// <summary>Every YAML document of a file; aliases resolved and <c>&lt;&lt;</c> merge keys applied, as compose does.</summary>
    public static IReadOnlyList<YamlMappingNode> LoadYaml(string relative)
    {
        using var reader = new StringReader(Read(relative));
        var stream = new YamlStream();
        stream.Load(new MergingParser(new Parser(reader)));
        return [.. stream.Documents.Select(d => d.RootNode).OfType<YamlMappingNode>()];
    }

    /// <summary>The <c>ProjectReference</c> closure of a project, the project included, as repository-relative paths.</summary>
    public static IReadOnlySet<string> ProjectClosure(string project)
    {
        var seen = new SortedSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([project]);
        while (pending.TryPop(out var current))
        {
            if (!seen.Add(current))
            {
                continue;
            }

            var folder = Path.GetDirectoryName(current)!;
            foreach (var reference in XDocument.Parse(Read(current)).Descendants("ProjectReference"))
            {
                var include = reference.Attribute("Include")!.Value.Replace('\\', '/');
                pending.Push(Path.GetRelativePath(Root, Path.GetFullPath(Path.Combine(Root, folder, include))).Replace('\\', '/'));
            }
        }

        return seen;
    }

    /// <summary>The file name of a project's main assembly (<c>AssemblyName</c>, else the project's name) plus <c>.dll</c>.</summary>
    public static string AssemblyFile(string project)
    {
        var name = XDocument.Parse(Read(project)).Descendants("AssemblyName").FirstOrDefault()?.Value;
        return (name ?? Path.GetFileNameWithoutExtension(project)) + ".dll";
    }

    public static bool IsWebProject(string project) =>
        XDocument.Parse(Read(project)).Root!.Attribute("Sdk")?.Value == "Microsoft.NET.Sdk.Web";
}

/// <summary>Reading YAML nodes without ceremony: a missing key is null, scalars come back as strings.</summary>
public static class YamlNodes
{
    public static YamlNode? Get(this YamlNode node, params string[] path)
    {
        var current = node;
        foreach (var key in path)
        {
            if (current is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var next))
            {
                return null;
            }

            current = next;
        }

        return current;
    }

    public static string? Text(this YamlNode node, params string[] path) => (node.Get(path) as YamlScalarNode)?.Value;

    public static YamlMappingNode Map(this YamlNode node, params string[] path) =>
        node.Get(path) as YamlMappingNode ?? throw new Xunit.Sdk.XunitException($"no mapping at {string.Join('.', path)}");

    public static IEnumerable<YamlNode> Items(this YamlNode node, params string[] path) =>
        node.Get(path) is YamlSequenceNode list ? list.Children : [];

    /// <summary>The keys and scalar values of a mapping (nested values are left out).</summary>
    public static Dictionary<string, string> Scalars(this YamlMappingNode map) =>
        map.Children.Where(c => c.Value is YamlScalarNode).ToDictionary(c => ((YamlScalarNode)c.Key).Value!, c => ((YamlScalarNode)c.Value).Value ?? "", StringComparer.Ordinal);
}
