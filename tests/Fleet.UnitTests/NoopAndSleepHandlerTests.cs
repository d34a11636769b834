using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;

namespace Fleet.UnitTests;

public sealed class NoopAndSleepHandlerTests
{
    [Theory]
    [InlineData("{}")]
    [InlineData("""{"ignored":[1,2,3]}""")]
    public async Task Noop_ReturnsEmptyObject(string payload)
    {
        var output = await HandlerRunner.RunAsync(new NoopHandler(), payload);

        Assert.Equal("{}", output.GetRawText());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public async Task Sleep_ReturnsEmptyObject(int ms)
    {
        var output = await HandlerRunner.RunAsync(new SleepHandler(), $$"""{"ms":{{ms}}}""");

        Assert.Equal("{}", output.GetRawText());
    }

    [Fact]
    public async Task Sleep_StopsWaiting_WhenCancelled()
    {
        var prepared = new SleepHandler().Prepare(HandlerRunner.Payload("""{"ms":3600000}"""));
        using var cancellation = new CancellationTokenSource();

        var running = prepared(cancellation.Token).AsTask();
        await cancellation.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    [Fact]
    public void NoopAndSleep_RunInIoLane()
    {
        Assert.Equal(TaskLane.Io, new NoopHandler().Lane);
        Assert.Equal(TaskLane.Io, new SleepHandler().Lane);
    }
}
