using System.CommandLine;
using System.Reflection;
using System.Text.RegularExpressions;
using Fleet.Api;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace Fleet.UnitTests.Docs;

/// <summary>What the docs may name, read from the real thing: the CLI's command tree, the API's route table, the Makefile.</summary>
internal static partial class RealFleet
{
    /// <summary>
    /// The <c>fleet</c> CLI's commands by name. The root command is assembled in the CLI's Program.cs from
    /// <c>XxxCommand.Create()</c> calls; each listed factory is called here, so names and options are the real ones.
    /// </summary>
    public static IReadOnlyDictionary<string, Command> CliCommands(string root)
    {
        var program = File.ReadAllText(Path.Combine(root, "src", "Fleet.Cli", "Program.cs"));
        var factories = CommandFactory().Matches(program).Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(factories);
        var cli = Assembly.Load("fleet");
        var commands = new Dictionary<string, Command>(StringComparer.Ordinal);
        foreach (var name in factories)
        {
            var type = cli.GetTypes().SingleOrDefault(t => t.Name == name)
                ?? throw new InvalidOperationException($"Program.cs calls {name}.Create(), but the CLI has no type {name}");
            var create = type.GetMethod("Create", BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static, Type.EmptyTypes)!;
            var command = (Command)create.Invoke(null, null)!;
            commands[command.Name] = command;
        }

        return commands;
    }

    /// <summary>
    /// Every name an option of the command (or of one of its subcommands, as <c>fleet queues migrate --to</c>) answers
    /// to (<c>--workload</c>, <c>-w</c>), help included.
    /// </summary>
    public static ISet<string> OptionNames(Command command) =>
        command.Subcommands.SelectMany(OptionNames)
            .Concat(command.Options.SelectMany(o => o.Aliases.Append(o.Name)))
            .Concat(["--help", "-h", "-?"]).ToHashSet(StringComparer.Ordinal);

    /// <summary>The targets the Makefile defines.</summary>
    public static ISet<string> MakeTargets(string root) =>
        File.ReadAllLines(Path.Combine(root, "Makefile"))
            .Select(l => MakeTarget().Match(l))
            .Where(m => m.Success)
            .SelectMany(m => m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// The API's endpoints as <c>MapFleetApi</c> maps them, from a host that is built but never started (nothing
    /// connects). <paramref name="readsRequireKey"/> sets <c>Api:ReadsRequireKey</c>, which decides whether the reads need
    /// the read scope or are open.
    /// </summary>
    public static async Task<IReadOnlyList<ApiRoute>> ApiRoutesAsync(bool readsRequireKey)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = Environments.Production, ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:fleetdb"] = "Host=127.0.0.1;Port=1;Database=fleet;Username=fleet;Password=unused",
            ["ConnectionStrings:rabbitmq"] = "amqp://fleet:unused@127.0.0.1:1/fleet",
            ["Api:ApiKeys:0"] = "docs-test-key-0123456789",
        });
        builder.AddFleetApi(o => o.ReadsRequireKey = readsRequireKey);
        await using var app = builder.Build();
        app.MapFleetApi();
        return ((IEndpointRouteBuilder)app).DataSources
            .SelectMany(d => d.Endpoints)
            .OfType<RouteEndpoint>()
            .Select(e => new ApiRoute(
                "/" + (e.RoutePattern.RawText ?? "").TrimStart('/'),
                e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? [],
                e.Metadata.GetOrderedMetadata<IAuthorizeData>().Select(a => a.Policy).LastOrDefault(p => p is not null)))
            .ToList();
    }

    [GeneratedRegex(@"\b(\w+Command)\.Create\(\)")]
    private static partial Regex CommandFactory();

    // "name: prerequisites" but not "NAME := value" nor ".PHONY:".
    [GeneratedRegex(@"^([a-z0-9][a-z0-9_ -]*?)\s*:(?![:=])")]
    private static partial Regex MakeTarget();
}

/// <summary>One endpoint: its route template, its methods (none listed: any method) and the scope its key needs (null: open).</summary>
internal sealed partial record ApiRoute(string Template, IReadOnlyList<string> Methods, string? Scope)
{
    /// <summary>True when a path written in the docs (<c>/tasks/{id}</c>, <c>/tasks/01a2...</c>) is this route.</summary>
    public bool Matches(string method, string path)
    {
        if (Methods.Count > 0 && !Methods.Contains(method, StringComparer.OrdinalIgnoreCase))
        {
            return false;
        }

        var pattern = "^" + string.Join("/", Template.Trim('/').Split('/')
            .Select(segment => string.Join("[^/]+", Parameter().Split(segment).Select(Regex.Escape)))) + "$";
        return Regex.IsMatch(path.Trim('/'), pattern);
    }

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex Parameter();
}
