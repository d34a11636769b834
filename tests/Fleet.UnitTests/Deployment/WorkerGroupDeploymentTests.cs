using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Fleet.Client;
using Fleet.Contracts;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// A worker group's queue (docs/worker-groups.md) exists in the broker before any worker or API starts, with what a
/// lane has: the broker's definitions rendered with FLEET_QUEUES declare its exchanges, queues and bindings, and give
/// each component the same rights on it as on fleet-cpu and fleet-io. Without FLEET_QUEUES nothing changes.
/// </summary>
public sealed class WorkerGroupDeploymentTests
{
    private const string Template = "infra/rabbitmq/definitions.template.json";

    [Theory]
    [InlineData("quorum", BrokerQueueType.Quorum)]
    [InlineData("classic", BrokerQueueType.Classic)]
    public void RenderedDefinitions_DeclareEachGroupsQueueAndDispatchQueue_LikeALane(string queueType, BrokerQueueType expected)
    {
        var definitions = RenderOk(new() { ["FLEET_QUEUE_TYPE"] = queueType, ["FLEET_QUEUES"] = "reports=cpu, emails=io" });
        string[] names = [.. TaskQueues.All, "reports", "emails"];
        var everyQueue = names.SelectMany(q => new[] { q, TaskQueues.DispatchQueueOf(q) }).ToList();

        var queues = definitions["queues"]!.AsArray();
        Assert.Equal(everyQueue.Order(), queues.Select(q => (string)q!["name"]!).Order());
        Assert.All(queues, q =>
        {
            Assert.Equal(QueueTopology.LaneArguments(expected), q!["arguments"]!.AsObject().ToDictionary(a => a.Key, a => (object?)(string?)a.Value));
            Assert.True((bool)q["durable"]!);
            Assert.False((bool)q["auto_delete"]!);
        });

        // Each queue has a fanout exchange of its own name that delivers to it, as the built-in lanes do.
        var exchanges = definitions["exchanges"]!.AsArray().Where(e => (string)e!["name"]! != TaskQueues.Control).ToList();
        Assert.Equal(everyQueue.Order(), exchanges.Select(e => (string)e!["name"]!).Order());
        Assert.All(exchanges, e => Assert.Equal(("fanout", true), ((string)e!["type"]!, (bool)e["durable"]!)));
        Assert.Equal(
            everyQueue.Select(q => (q, q, "queue")).Order(),
            definitions["bindings"]!.AsArray().Select(b => ((string)b!["source"]!, (string)b["destination"]!, (string)b["destination_type"]!)).Order());
        Assert.All(definitions["exchanges"]!.AsArray(), e => Assert.Empty(e!["arguments"]!.AsObject()));
        Assert.All(definitions["bindings"]!.AsArray(), b => Assert.Empty(b!["arguments"]!.AsObject()));
    }

    /// <summary>RabbitMQ matches each right's regex against the whole resource name; these are the rights a lane's user needs.</summary>
    [Fact]
    public void RenderedRights_OnAGroupsQueues_AreTheLanes_AndNoMore()
    {
        var rights = Rights(RenderOk(new() { ["FLEET_QUEUES"] = "reports=cpu emails=io" })).ToDictionary(r => r.Key, r => new Regex(r.Value, RegexOptions.CultureInvariant));

        // Workers consume the group's queues, move failures to its dead-letter queues and declare all of them.
        foreach (var name in new[] { "reports", "reports.dispatch", "reports_error", "reports.dispatch_error", "reports_skipped", "emails", "emails.dispatch_skipped" })
        {
            Assert.All(new[] { "configure", "write", "read" }, right => Assert.Matches(rights[("fleet_worker", right)], name));
        }

        // Producers publish tasks to the group's exchange only; the API also to its dispatch exchange, and reads its dead letters.
        Assert.Matches(rights[("fleet_producer", "write")], "reports");
        Assert.DoesNotMatch(rights[("fleet_producer", "write")], "reports.dispatch");
        Assert.Matches(rights[("fleet_api", "write")], "reports.dispatch");
        Assert.Matches(rights[("fleet_api", "read")], "reports.dispatch_error");
        Assert.DoesNotMatch(rights[("fleet_api", "configure")], "reports");

        // A queue no one declared gets nothing, whatever its suffix.
        foreach (var regex in rights.Where(r => r.Key.User != "fleet").Select(r => r.Value))
        {
            Assert.All(new[] { "other", "other_error", "other.dispatch", "reportsx", "xreports" }, name => Assert.DoesNotMatch(regex, name));
        }
    }

    [Fact]
    public void WithoutGroups_TheOutputIsTheTemplate_ButThePasswordHashes()
    {
        // Classic lanes take the template's empty arguments, so the only difference left is the hashes.
        var output = TempFile();
        try
        {
            var (exitCode, error) = Render(output, new() { ["FLEET_QUEUE_TYPE"] = "classic" });
            Assert.True(exitCode == 0, error);
            var rendered = Regex.Replace(File.ReadAllText(output), "\"password_hash\": \"[^\"]*\"", "\"password_hash\": \"@\"");
            var template = Regex.Replace(DeploymentFiles.Read(Template), "\"password_hash\": \"@[A-Z_]+@\"", "\"password_hash\": \"@\"");
            Assert.Equal(template, rendered);
        }
        finally
        {
            File.Delete(output);
        }

        // An empty list is no list: the rights stay those of the template.
        Assert.Equal(Rights(JsonNode.Parse(DeploymentFiles.Read(Template))!), Rights(RenderOk(new() { ["FLEET_QUEUES"] = " , " })));
    }

    [Theory]
    [InlineData("Reports=cpu", "'Reports=cpu': the name must match")]
    [InlineData("a.b=cpu", "'a.b=cpu': the name must match")]
    [InlineData("a_b=io", "'a_b=io': the name must match")]
    [InlineData("fleet-cpu=cpu", "'fleet-cpu=cpu': fleet-cpu is a built-in queue")]
    [InlineData("fleet-control=io", "'fleet-control=io': fleet-control is a built-in queue")]
    [InlineData("x=gpu", "'x=gpu': the lane must be cpu or io")]
    [InlineData("reports", "'reports' is not NAME=LANE")]
    [InlineData("reports=cpu,emails=io,reports=io", "'reports=io': reports is listed twice")]
    public void RenderedDefinitions_RefuseABadEntry_NamingIt(string queues, string message)
    {
        var output = TempFile();
        var (exitCode, error) = Render(output, new() { ["FLEET_QUEUES"] = queues });

        Assert.Equal(1, exitCode);
        Assert.Contains("FLEET_QUEUES: " + message, error, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }

    /// <summary>
    /// A local fleet's API gets the groups as Api__Queues__NAME=LANE from .fleet/env (fleet.sh starts it with that
    /// file); services.sh takes FLEET_QUEUES from the environment, else from what `start` remembered in .fleet/settings.
    /// </summary>
    [Theory]
    [InlineData("reports=cpu,emails=io", null, new[] { "reports=cpu", "emails=io" })]
    [InlineData(null, "reports=cpu emails=io", new[] { "reports=cpu", "emails=io" })]
    [InlineData("audit=io", "reports=cpu", new[] { "audit=io" })]
    [InlineData("", "reports=cpu", new string[0])]
    public void LocalServices_WriteTheGroupsToEnv_ForTheApi(string? given, string? remembered, string[] expected)
    {
        var home = Path.Combine(Path.GetTempPath(), "fleet-services-" + Guid.NewGuid().ToString("N"));
        try
        {
            if (remembered is not null)
            {
                Directory.CreateDirectory(home);
                File.WriteAllText(Path.Combine(home, "settings"), $"FLEET_QUEUE_TYPE=quorum\nFLEET_QUEUES='{remembered}'\n");
            }

            var (exitCode, error) = Services(home, given);
            Assert.True(exitCode == 0, error);

            var lines = File.ReadAllLines(Path.Combine(home, "env")).Where(l => l.StartsWith("export Api__Queues__", StringComparison.Ordinal));
            Assert.Equal(expected.Select(e => "export Api__Queues__" + e), lines);
        }
        finally
        {
            if (Directory.Exists(home))
            {
                Directory.Delete(home, recursive: true);
            }
        }
    }

    /// <summary>A shell variable's name cannot hold '-': a local fleet's groups are named without one.</summary>
    [Theory]
    [InlineData("my-group=cpu", "'my-group=cpu' is not NAME=cpu or NAME=io")]
    [InlineData("x=gpu", "'x=gpu' is not NAME=cpu or NAME=io")]
    [InlineData("reports=cpu reports=io", "'reports=io': reports is listed twice")]
    public void LocalServices_RefuseABadGroup(string given, string message)
    {
        var home = Path.Combine(Path.GetTempPath(), "fleet-services-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (exitCode, error) = Services(home, given);

            Assert.NotEqual(0, exitCode);
            Assert.Contains("FLEET_QUEUES: " + message, error, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(home))
            {
                Directory.Delete(home, recursive: true);
            }
        }
    }

    private static (int ExitCode, string Error) Services(string home, string? queues)
    {
        var info = new ProcessStartInfo("bash", [DeploymentFiles.PathOf("infra/local/services.sh"), "env"]) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var key in info.Environment.Keys.Where(k => k.StartsWith("FLEET_", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(key);
        }

        info.Environment["FLEET_HOME"] = home;
        if (queues is not null)
        {
            info.Environment["FLEET_QUEUES"] = queues;
        }

        using var bash = Process.Start(info)!;
        var error = bash.StandardError.ReadToEnd();
        bash.StandardOutput.ReadToEnd();
        bash.WaitForExit();
        return (bash.ExitCode, error);
    }

    /// <summary>Each user's right (configure, write, read) as its regex's text.</summary>
    private static Dictionary<(string User, string Right), string> Rights(JsonNode definitions) =>
        definitions["permissions"]!.AsArray()
            .SelectMany(p => new[] { "configure", "write", "read" }.Select(right => (Key: ((string)p!["user"]!, right), Regex: (string)p[right]!)))
            .ToDictionary(r => r.Key, r => r.Regex);

    private static string TempFile() => Path.Combine(Path.GetTempPath(), "fleet-definitions-" + Guid.NewGuid().ToString("N") + ".json");

    private static JsonNode RenderOk(Dictionary<string, string> environment)
    {
        var output = TempFile();
        try
        {
            var (exitCode, error) = Render(output, environment);
            Assert.True(exitCode == 0, error);
            return JsonNode.Parse(File.ReadAllText(output))!;
        }
        finally
        {
            File.Delete(output);
        }
    }

    private static (int ExitCode, string Error) Render(string output, Dictionary<string, string> environment)
    {
        var info = new ProcessStartInfo("bash", [DeploymentFiles.PathOf("infra/rabbitmq/render-definitions.sh"), output]) { RedirectStandardError = true };
        foreach (var key in info.Environment.Keys.Where(k => k.StartsWith("FLEET_", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(key);
        }

        foreach (var (key, value) in new[] { ("FLEET_AMQP_PASSWORD", "a"), ("FLEET_AMQP_PRODUCER_PASSWORD", "b"), ("FLEET_AMQP_API_PASSWORD", "c"), ("FLEET_AMQP_WORKER_PASSWORD", "d") })
        {
            info.Environment[key] = value;
        }

        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        using var bash = Process.Start(info)!;
        var error = bash.StandardError.ReadToEnd();
        bash.WaitForExit();
        return (bash.ExitCode, error);
    }
}
