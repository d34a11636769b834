using System.Text.Json;
using System.Text.RegularExpressions;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// The three Dockerfiles against the repository: no Docker engine runs here, so what a build would trip over
/// (a project file missing from the restore layer, a wrong entry point, an unpinned or mismatched base image) is
/// checked from the files themselves.
/// </summary>
public sealed partial class DockerfileTests
{
    public static TheoryData<string> Apps => [.. FleetApp.All.Select(a => a.Name)];

    [Theory]
    [MemberData(nameof(Apps))]
    public void EveryImage_IsPinnedToAPatchVersion_AndMatchesTheTargetFramework(string name)
    {
        var dockerfile = DockerfileModel.Load(FleetApp.Named(name).Dockerfile);

        Assert.Equal(2, dockerfile.Stages.Count);
        foreach (var stage in dockerfile.Stages)
        {
            Assert.Matches(PinnedDotnetImage(), stage.Image);
        }

        Assert.StartsWith("mcr.microsoft.com/dotnet/sdk:10.0.", dockerfile.Stages[0].Image, StringComparison.Ordinal);
        var runtime = DeploymentFiles.IsWebProject(FleetApp.Named(name).Project) ? "aspnet" : "runtime";
        Assert.StartsWith($"mcr.microsoft.com/dotnet/{runtime}:10.0.", dockerfile.Final.Image, StringComparison.Ordinal);
        Assert.Contains("<TargetFramework>net10.0</TargetFramework>", DeploymentFiles.Read("Directory.Build.props"), StringComparison.Ordinal);
    }

    [Fact]
    public void AllDockerfiles_UseOneSdk_AndOneRuntimeVersion_AndTheSdkSatisfiesGlobalJson()
    {
        var models = FleetApp.All.Select(a => DockerfileModel.Load(a.Dockerfile)).ToList();

        var sdks = models.Select(m => m.Stages[0].Image).Distinct().ToList();
        var runtimes = models.Select(m => Tag(m.Final.Image)).Distinct().ToList();
        Assert.Single(sdks);
        Assert.Single(runtimes);

        // global.json: { "sdk": { "version": "10.0.100", "rollForward": "latestFeature" } } accepts 10.0.x00 and later.
        using var globalJson = JsonDocument.Parse(DeploymentFiles.Read("global.json"));
        var sdk = globalJson.RootElement.GetProperty("sdk");
        Assert.Equal("latestFeature", sdk.GetProperty("rollForward").GetString());
        var wanted = Version.Parse(sdk.GetProperty("version").GetString()!);
        var image = Version.Parse(Tag(sdks[0]).Split('-')[0]);
        Assert.True(image.Major == wanted.Major && image.Minor == wanted.Minor && image.Build >= wanted.Build,
            $"the SDK image {sdks[0]} does not satisfy global.json ({wanted}, latestFeature)");
    }

    [Theory]
    [MemberData(nameof(Apps))]
    public void TheRestoreLayer_HoldsEveryFileRestoreReads_BeforeTheSourcesAreCopied(string name)
    {
        var app = FleetApp.Named(name);
        var build = DockerfileModel.Load(app.Dockerfile).Stages[0];

        var restoreAt = build.Instructions.ToList().FindIndex(i => i.Keyword == "RUN" && i.Arguments.StartsWith("dotnet restore ", StringComparison.Ordinal));
        Assert.True(restoreAt > 0, $"{app.Dockerfile}: no `RUN dotnet restore` step");
        Assert.Equal($"dotnet restore {app.Project}", build.Instructions[restoreAt].Arguments);

        var copiedBeforeRestore = build.Instructions.Take(restoreAt).Where(i => i.Keyword == "COPY").SelectMany(CopiedFiles).ToHashSet(StringComparer.Ordinal);
        string[] restoreInputs = ["global.json", "nuget.config", "Directory.Build.props", "Directory.Packages.props"];
        foreach (var file in restoreInputs.Concat(DeploymentFiles.ProjectClosure(app.Project)))
        {
            Assert.True(copiedBeforeRestore.Contains(file), $"{app.Dockerfile}: {file} is not copied before `dotnet restore`");
        }

        // Only project files before restore (sources would defeat the layer cache), the whole src/ after it.
        Assert.All(copiedBeforeRestore.Where(f => f.StartsWith("src/", StringComparison.Ordinal)), f => Assert.EndsWith(".csproj", f, StringComparison.Ordinal));
        Assert.Contains(build.Instructions.Skip(restoreAt), i => i.Keyword == "COPY" && i.Arguments == "src/ src/");
    }

    [Theory]
    [MemberData(nameof(Apps))]
    public void EveryCopiedPath_Exists_AndIsNotIgnoredByDockerignore(string name)
    {
        var dockerfile = DockerfileModel.Load(FleetApp.Named(name).Dockerfile);
        var ignored = DeploymentFiles.Read(".dockerignore").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();

        foreach (var copy in dockerfile.Stages.SelectMany(s => s.All("COPY")).Where(c => !c.Arguments.StartsWith("--from=", StringComparison.Ordinal)))
        {
            var sources = copy.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries)[..^1];
            foreach (var source in sources)
            {
                Assert.True(DeploymentFiles.Exists(source), $"{dockerfile.Path}: COPY {source}: no such file or folder");
                Assert.DoesNotContain(source.TrimEnd('/'), ignored);
            }
        }

        // Host build outputs must stay out of the context: their obj/ would replace the image's own restore.
        Assert.Contains("**/bin", ignored);
        Assert.Contains("**/obj", ignored);
        Assert.Contains(".fleet", ignored);
        Assert.Contains(".git", ignored);
    }

    [Theory]
    [MemberData(nameof(Apps))]
    public void ThePublishedAssembly_IsTheEntryPoint_RunAsANonRootUser(string name)
    {
        var app = FleetApp.Named(name);
        var dockerfile = DockerfileModel.Load(app.Dockerfile);

        var publish = Assert.Single(dockerfile.Stages[0].All("RUN"), r => r.Arguments.StartsWith("dotnet publish ", StringComparison.Ordinal));
        Assert.StartsWith($"dotnet publish {app.Project} -c Release --no-restore", publish.Arguments, StringComparison.Ordinal);
        Assert.Equal(["dotnet", DeploymentFiles.AssemblyFile(app.Project)], dockerfile.Final.Last("ENTRYPOINT")!.ExecForm());

        // The runtime stage copies the publish output only, and drops root before anything runs.
        Assert.All(dockerfile.Final.All("COPY"), c => Assert.StartsWith($"--from={dockerfile.Stages[0].Name} ", c.Arguments, StringComparison.Ordinal));
        var user = dockerfile.Final.Last("USER")?.Arguments;
        Assert.True(user is "$APP_UID" || (int.TryParse(user, out var uid) && uid > 0), $"{app.Dockerfile}: the final stage runs as '{user ?? "root"}', not as the image's non-root user");
        Assert.Empty(dockerfile.Final.All("RUN"));
    }

    [Theory]
    [InlineData("api")]
    [InlineData("worker")]
    public void TheHealthCheck_AsksAliveOnThePortTheProcessListensOn(string name)
    {
        var app = FleetApp.Named(name);
        var dockerfile = DockerfileModel.Load(app.Dockerfile);
        var port = app.ListenPort();

        Assert.Equal(port.ToString(System.Globalization.CultureInfo.InvariantCulture), Assert.Single(dockerfile.Final.All("EXPOSE")).Arguments);
        var check = Assert.Single(dockerfile.Final.All("HEALTHCHECK"));
        var command = check.ExecForm(afterPrefix: "CMD");

        // No curl in the .NET images: bash (present in them) opens the connection itself.
        Assert.Equal(["bash", "-c"], command[..2]);
        Assert.Contains($"/dev/tcp/127.0.0.1/{port} ", command[2], StringComparison.Ordinal);
        Assert.Contains("GET /alive HTTP/1.1", command[2], StringComparison.Ordinal);
        Assert.Matches(@"--timeout=\d+s", check.Arguments);
    }

    [Fact]
    public void TheWorkerImage_ListensOnAFixedPortOnEveryInterface()
    {
        // Without a configured URL the worker binds a free port on 127.0.0.1 (src/Fleet.Worker/Program.cs), which
        // neither a probe nor Prometheus could reach from outside the container.
        var env = DockerfileModel.Load(FleetApp.Worker.Dockerfile).FinalStageEnvironment;

        Assert.Matches(@"^http://(\+|\*|0\.0\.0\.0|\[::\]):\d+$", env["ASPNETCORE_URLS"]);
        Assert.Equal("", env["ASPNETCORE_HTTP_PORTS"]);
        Assert.Contains("builder.Configuration[\"urls\"]", DeploymentFiles.Read("src/Fleet.Worker/Program.cs"), StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Apps))]
    public void TheImagesOwnSettings_AreSettingsTheAppReads(string name)
    {
        var app = FleetApp.Named(name);

        AppEnvironment.CheckKeys(app, DockerfileModel.Load(app.Dockerfile).FinalStageEnvironment, app.Dockerfile);
    }

    [Fact]
    public void TheMigratorImage_RunsFleetMigrate_AndHasNothingToProbe()
    {
        var dockerfile = DockerfileModel.Load(FleetApp.Migrator.Dockerfile);

        Assert.Equal(["migrate"], dockerfile.Final.Last("CMD")!.ExecForm());
        Assert.Equal("NONE", dockerfile.Final.Last("HEALTHCHECK")!.Arguments);
        Assert.Contains("new Command(\"migrate\"", DeploymentFiles.Read("src/Fleet.Cli/MigrateCommand.cs"), StringComparison.Ordinal);
    }

    private static IEnumerable<string> CopiedFiles(DockerInstruction copy)
    {
        var parts = copy.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return parts[..^1];
    }

    private static string Tag(string image) => image[(image.LastIndexOf(':') + 1)..];

    // mcr.microsoft.com/dotnet/<repo>:<major>.<minor>.<patch>[-<os>], never a floating tag such as 10.0 or latest.
    [GeneratedRegex(@"^mcr\.microsoft\.com/dotnet/(sdk|aspnet|runtime):\d+\.\d+\.\d+(-[a-z0-9.]+)?$")]
    private static partial Regex PinnedDotnetImage();
}
