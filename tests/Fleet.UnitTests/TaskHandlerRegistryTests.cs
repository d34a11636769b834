using Fleet.Samples.CustomTasks;
using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.UnitTests;

public sealed class TaskHandlerRegistryTests
{
    [Fact]
    public void AddFleetTasks_RegistersEveryBuiltInType_Sorted()
    {
        using var provider = BuiltInHandlers.CreateProvider();

        var registry = provider.GetRequiredService<TaskHandlerRegistry>();

        Assert.Equal(["heat", "http-get", "noop", "sha256", "sieve", "sleep"], registry.Types);
    }

    [Theory]
    [InlineData("noop", TaskLane.Io)]
    [InlineData("sleep", TaskLane.Io)]
    [InlineData("http-get", TaskLane.Io)]
    [InlineData("sha256", TaskLane.Cpu)]
    [InlineData("sieve", TaskLane.Cpu)]
    [InlineData("heat", TaskLane.Cpu)]
    public void TryGet_FindsBuiltInHandler_WithItsLane(string type, TaskLane lane)
    {
        using var provider = BuiltInHandlers.CreateProvider();
        var registry = provider.GetRequiredService<TaskHandlerRegistry>();

        var found = registry.TryGet(type, out var handler);

        Assert.True(found);
        Assert.Equal(type, handler!.Type);
        Assert.Equal(lane, handler.Lane);
    }

    [Theory]
    [InlineData("unknown")]
    [InlineData("SHA256")]
    [InlineData("")]
    public void TryGet_ReturnsFalse_ForUnknownOrDifferentlyCasedType(string type)
    {
        var registry = new TaskHandlerRegistry([new SieveHandler()]);

        var found = registry.TryGet(type, out var handler);

        Assert.False(found);
        Assert.Null(handler);
    }

    [Fact]
    public void Constructor_RejectsTwoHandlersForTheSameType()
    {
        var error = Assert.Throws<InvalidOperationException>(() => new TaskHandlerRegistry([new SieveHandler(), new NoopHandler(), new SieveHandler()]));

        Assert.Contains("'sieve'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Constructor_RejectsCustomHandlerThatClaimsABuiltInType()
    {
        var services = new ServiceCollection();
        services.AddFleetTasks();
        services.AddTaskHandler<ImpostorSieveHandler>();
        using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<InvalidOperationException>(provider.GetRequiredService<TaskHandlerRegistry>);

        Assert.Contains(nameof(ImpostorSieveHandler), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AddTaskHandler_Twice_RegistersTheHandlerOnce()
    {
        var services = new ServiceCollection();
        services.AddFleetTasks();
        services.AddFleetTasks();
        services.AddCustomTasks();
        services.AddCustomTasks();
        using var provider = services.BuildServiceProvider();

        var registry = provider.GetRequiredService<TaskHandlerRegistry>();

        Assert.Equal(["heat", "http-get", "noop", "sha256", "sieve", "sleep", "word-count"], registry.Types);
    }

    private sealed class ImpostorSieveHandler : TaskHandler<Empty, Empty>
    {
        public override string Type => SieveHandler.TypeName;

        public override TaskLane Lane => TaskLane.Io;

        protected override ValueTask<Empty> ExecuteAsync(Empty input, CancellationToken cancellationToken) => ValueTask.FromResult(Empty.Instance);
    }
}
