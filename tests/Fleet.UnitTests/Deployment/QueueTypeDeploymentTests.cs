using System.Diagnostics;
using System.Text.Json.Nodes;
using Fleet.Cli;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.Worker.MessagePath;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// The queue type reaches every place that declares a lane with the same arguments as <see cref="QueueTopology"/>:
/// the broker's rendered definitions, the local services' .fleet/env, and <c>fleet queues migrate</c>'s queue list.
/// </summary>
public sealed class QueueTypeDeploymentTests
{
    [Theory]
    [InlineData(null, QueueTopology.DefaultQueueType)]
    [InlineData("classic", BrokerQueueType.Classic)]
    [InlineData("quorum", BrokerQueueType.Quorum)]
    [InlineData("Quorum", BrokerQueueType.Quorum)]
    public void RenderedDefinitions_DeclareTheLanesWithQueueTopologysArguments(string? queueType, BrokerQueueType expected)
    {
        var output = Path.Combine(Path.GetTempPath(), "fleet-definitions-" + Guid.NewGuid().ToString("N") + ".json");
        try
        {
            var (exitCode, error) = Render(output, queueType);
            Assert.True(exitCode == 0, error);
            var definitions = JsonNode.Parse(File.ReadAllText(output))!;
            var queues = definitions["queues"]!.AsArray();
            Assert.Equal(TaskQueues.All.SelectMany(q => new[] { q, TaskQueues.DispatchQueueOf(q) }).Order(), queues.Select(q => (string)q!["name"]!).Order());
            foreach (var queue in queues)
            {
                var arguments = queue!["arguments"]!.AsObject().ToDictionary(a => a.Key, a => (object?)(string?)a.Value);
                Assert.Equal(QueueTopology.LaneArguments(expected), arguments);
            }

            // Exchanges and bindings never take queue arguments.
            Assert.All(definitions["exchanges"]!.AsArray(), e => Assert.Empty(e!["arguments"]!.AsObject()));
            Assert.All(definitions["bindings"]!.AsArray(), b => Assert.Empty(b!["arguments"]!.AsObject()));
        }
        finally
        {
            File.Delete(output);
        }
    }

    [Fact]
    public void RenderedDefinitions_RefuseAnUnknownQueueType()
    {
        var output = Path.Combine(Path.GetTempPath(), "fleet-definitions-" + Guid.NewGuid().ToString("N") + ".json");
        var (exitCode, error) = Render(output, "stream");

        Assert.NotEqual(0, exitCode);
        Assert.Contains("FLEET_QUEUE_TYPE must be classic or quorum, not 'stream'", error, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void Template_IsValidJson()
    {
        var template = JsonNode.Parse(File.ReadAllText(DeploymentFiles.PathOf("infra/rabbitmq/definitions.template.json")))!;
        Assert.NotEmpty(template["queues"]!.AsArray());
    }

    [Theory]
    [InlineData("quorum")]
    [InlineData("classic")]
    public void LocalServices_WriteTheQueueTypeToEnv(string queueType)
    {
        var home = Path.Combine(Path.GetTempPath(), "fleet-services-" + Guid.NewGuid().ToString("N"));
        try
        {
            var info = new ProcessStartInfo("bash", [DeploymentFiles.PathOf("infra/local/services.sh"), "env"]) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var key in Environment.GetEnvironmentVariables().Keys.OfType<string>().Where(k => k.StartsWith("FLEET_", StringComparison.Ordinal)))
            {
                info.Environment.Remove(key);
            }

            info.Environment["FLEET_HOME"] = home;
            info.Environment["FLEET_QUEUE_TYPE"] = queueType;
            using (var bash = Process.Start(info)!)
            {
                var error = bash.StandardError.ReadToEnd();
                bash.StandardOutput.ReadToEnd();
                bash.WaitForExit();
                Assert.True(bash.ExitCode == 0, error);
            }

            Assert.Contains($"export RabbitMq__QueueType={queueType}", File.ReadAllLines(Path.Combine(home, "env")));
        }
        finally
        {
            if (Directory.Exists(home))
            {
                Directory.Delete(home, recursive: true);
            }
        }
    }

    [Fact]
    public void Migration_MovesEveryQueueOfALane_OldRetryRungsFirst_TheDispatchQueueThenTheLaneLast()
    {
        // The rungs are an older version's: only those that still exist are moved (QueueMigrationTests).
        var queues = QueueMigrator.QueuesOf(TaskQueues.Io);

        Assert.Equal(
            [.. QueueTopology.RetryRungNames(TaskQueues.Io), $"{TaskQueues.Io}_error", $"{TaskQueues.Io}_skipped",
             "fleet-io.dispatch_error", "fleet-io.dispatch_skipped", "fleet-io.dispatch", TaskQueues.Io],
            queues.Select(q => q.Name));
        Assert.All(queues.Where(q => q.IsRung), q => Assert.Equal(
            QueueTopology.RetryRungArguments(BrokerQueueType.Quorum, TaskQueues.Io),
            QueueMigrator.ArgumentsOf(q, BrokerQueueType.Quorum)));
        Assert.All(queues.Where(q => !q.IsRung), q => Assert.Equal(
            QueueTopology.LaneArguments(BrokerQueueType.Quorum),
            QueueMigrator.ArgumentsOf(q, BrokerQueueType.Quorum)));
    }

    private static (int ExitCode, string Error) Render(string output, string? queueType)
    {
        var info = new ProcessStartInfo("bash", [DeploymentFiles.PathOf("infra/rabbitmq/render-definitions.sh"), output]) { RedirectStandardError = true };
        foreach (var (key, value) in new[] { ("FLEET_AMQP_PASSWORD", "a"), ("FLEET_AMQP_PRODUCER_PASSWORD", "b"), ("FLEET_AMQP_API_PASSWORD", "c"), ("FLEET_AMQP_WORKER_PASSWORD", "d") })
        {
            info.Environment[key] = value;
        }

        info.Environment.Remove("FLEET_QUEUE_TYPE");
        if (queueType is not null)
        {
            info.Environment["FLEET_QUEUE_TYPE"] = queueType;
        }

        using var bash = Process.Start(info)!;
        var error = bash.StandardError.ReadToEnd();
        bash.WaitForExit();
        return (bash.ExitCode, error);
    }
}
