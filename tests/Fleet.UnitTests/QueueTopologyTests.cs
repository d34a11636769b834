using Fleet.Client;
using Fleet.Messaging;
using Microsoft.Extensions.Configuration;

namespace Fleet.UnitTests;

/// <summary>Every declarer takes a queue's arguments from QueueTopology; these are what the broker compares.</summary>
public sealed class QueueTopologyTests
{
    // Workers no longer declare retry rungs (retries wait in PostgreSQL); `fleet queues migrate` still moves the rungs an
    // older version left, with the arguments and under the names that version declared them with.
    [Fact]
    public void OldRetryRungs_KeepTheirNames_1sTo4096s()
    {
        var names = QueueTopology.RetryRungNames("fleet-cpu");

        Assert.Equal(["fleet-cpu.retry.1s", "fleet-cpu.retry.2s", "fleet-cpu.retry.4s"], names.Take(3));
        Assert.Equal("fleet-cpu.retry.4096s", names[^1]);
        Assert.Equal(13, names.Count);
    }

    [Fact]
    public void ClassicLanes_KeepTheArgumentlessDeclareOfEarlierVersions()
    {
        Assert.Empty(QueueTopology.LaneArguments(BrokerQueueType.Classic));
        Assert.Equal(
            new Dictionary<string, object?> { ["x-dead-letter-exchange"] = "", ["x-dead-letter-routing-key"] = "fleet-io" },
            QueueTopology.RetryRungArguments(BrokerQueueType.Classic, "fleet-io"));
    }

    [Fact]
    public void OldQuorumRungs_DeadLetterAtLeastOnce_BackIntoTheirLane()
    {
        Assert.Equal(new Dictionary<string, object?> { ["x-queue-type"] = "quorum" }, QueueTopology.LaneArguments(BrokerQueueType.Quorum));
        Assert.Equal(
            new Dictionary<string, object?>
            {
                ["x-queue-type"] = "quorum",
                ["x-dead-letter-exchange"] = "",
                ["x-dead-letter-routing-key"] = "fleet-cpu",
                ["x-dead-letter-strategy"] = "at-least-once",
                ["x-overflow"] = "reject-publish",
            },
            QueueTopology.RetryRungArguments(BrokerQueueType.Quorum, "fleet-cpu"));
    }

    [Theory]
    [InlineData(null, QueueTopology.DefaultQueueType)]
    [InlineData("", QueueTopology.DefaultQueueType)]
    [InlineData("classic", BrokerQueueType.Classic)]
    [InlineData(" Quorum ", BrokerQueueType.Quorum)]
    public void QueueType_IsReadByName(string? value, BrokerQueueType expected) =>
        Assert.Equal(expected, QueueTopology.ParseQueueType(value));

    [Theory]
    [InlineData("stream")]
    [InlineData("1")]
    [InlineData("quorum,classic")]
    public void AnotherQueueType_IsRefusedNamingTheSetting(string value)
    {
        var ex = Assert.Throws<FormatException>(() => QueueTopology.ParseQueueType(value));
        Assert.Contains("RabbitMq__QueueType", ex.Message);
        Assert.Contains(value, ex.Message);
    }

    [Fact]
    public void TheBrokerAddress_CarriesTheConfiguredQueueType()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:rabbitmq"] = "amqp://u:p@mq:5672/fleet",
            ["RabbitMq:QueueType"] = "quorum",
        }).Build();

        Assert.Equal(BrokerQueueType.Quorum, configuration.GetRabbitMqAddress().QueueType);
    }
}
