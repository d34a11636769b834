using System.Text.Json;
using Fleet.Worker;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

public sealed class CpuLaneTests
{
    private static CpuLane NewLane(int threads) => new(Options.Create(new WorkerOptions { CpuConcurrency = threads }));

    [Fact]
    public void Dispose_WhileTheLaneThreadsWait_LetsThemLeaveWithoutCrashingTheProcess()
    {
        // Disposing the queue under threads that were still waking from their wait threw ObjectDisposedException
        // on a lane thread, which ends the whole process (a worker stopping, or a test host stopping its worker).
        // The race needs many tries to show; if it comes back, this test run dies instead of passing.
        for (var i = 0; i < 2_000; i++)
        {
            NewLane(4).Dispose();
        }

        Thread.Sleep(200);
    }

    [Fact]
    public async Task ARunQueuedBeforeDispose_StillCompletes()
    {
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var lane = NewLane(1);
        var first = lane.Start(_ =>
        {
            started.Set();
            release.Wait();
            return ValueTask.FromResult(JsonSerializer.SerializeToElement(1));
        }, CancellationToken.None);
        var second = lane.Start(_ => ValueTask.FromResult(JsonSerializer.SerializeToElement(2)), CancellationToken.None);
        started.Wait();

        lane.Dispose();
        release.Set();

        Assert.Equal(1, (await first.Completion.Task).Output.GetInt32());
        Assert.Equal(2, (await second.Completion.Task).Output.GetInt32());
        Assert.Throws<InvalidOperationException>(() => lane.Start(_ => ValueTask.FromResult(default(JsonElement)), CancellationToken.None));
    }

    [Fact]
    public async Task EnterAsync_AdmitsAsManyAsThereAreThreads_AndAPlaceReturnsOnce()
    {
        using var lane = NewLane(2);
        var first = await lane.EnterAsync(CancellationToken.None);
        var second = await lane.EnterAsync(CancellationToken.None);

        var third = lane.EnterAsync(CancellationToken.None).AsTask();
        await Task.Delay(50);
        Assert.False(third.IsCompleted); // both places taken: the third message waits, unclaimed

        first.Dispose();
        first.Dispose(); // a second dispose must not hand out a place that does not exist
        using var admitted = await third.WaitAsync(TimeSpan.FromSeconds(10));

        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => lane.EnterAsync(cancel.Token).AsTask());
        second.Dispose();
    }
}
