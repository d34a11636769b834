using System.Text.Json;
using Fleet.Worker;
using Fleet.Worker.MessagePath;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

public sealed class CpuLaneTests
{
    private static CpuLane NewLane(int threads, int? claimAhead = null) =>
        new(Options.Create(new WorkerOptions { CpuConcurrency = threads, CpuClaimAhead = claimAhead }));

    [Fact]
    public void Dispose_WhileTheLaneThreadsWait_LetsThemLeaveWithoutCrashingTheProcess()
    {
        // Disposing the queue under threads that were still waking from their wait threw ObjectDisposedException
        // on a lane thread, which ends the whole process (a worker stopping, or a test host stopping its worker).
        // The race needs many tries to show; if it comes back, this test run dies instead of passing.
        var lanes = Enumerable.Range(0, 2_000).Select(_ => NewLane(4)).ToList();
        Assert.All(lanes, lane => Assert.Equal(4, lane.LiveThreads));

        foreach (var lane in lanes)
        {
            lane.Dispose();
        }

        // What disposal promises: every lane thread leaves, and the lane takes no more work.
        Assert.True(SpinWait.SpinUntil(() => lanes.All(lane => lane.LiveThreads == 0), TimeSpan.FromSeconds(30)),
            $"{lanes.Sum(lane => lane.LiveThreads)} lane threads did not leave after Dispose");
        Assert.All(lanes, lane => Assert.Throws<InvalidOperationException>(
            () => lane.Start(_ => ValueTask.FromResult(default(JsonElement)), CancellationToken.None)));
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
    public async Task RunAsync_AdmitsAsManyAsThereAreThreads_AndFreesAPlaceOnce_WhenLeftOrWhenTheWorkEnds()
    {
        using var lane = NewLane(2, claimAhead: 0);
        var leaveFirst = new TaskCompletionSource<Action>();
        var endFirst = new TaskCompletionSource();
        var endSecond = new TaskCompletionSource();
        var first = lane.RunAsync(Timeout.InfiniteTimeSpan, async leave =>
        {
            leaveFirst.SetResult(leave);
            await endFirst.Task;
        }, CancellationToken.None);
        var second = lane.RunAsync(Timeout.InfiniteTimeSpan, _ => endSecond.Task, CancellationToken.None);

        var thirdRan = false;
        var third = lane.RunAsync(Timeout.InfiniteTimeSpan, _ =>
        {
            thirdRan = true;
            return Task.CompletedTask;
        }, CancellationToken.None);
        await Task.Delay(50);
        Assert.False(third.IsCompleted); // both places taken: the third message waits, unclaimed

        var leave = await leaveFirst.Task;
        leave();
        leave(); // leaving twice must not hand out a place that does not exist
        Assert.True(await third.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(thirdRan);
        Assert.Equal(1, lane.FreePlaces);

        endFirst.SetResult(); // the work ends after it left: its place is not freed a second time
        Assert.True(await first.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(1, lane.FreePlaces);

        // No place within the wait: false, and the work never runs.
        var blocked = lane.RunAsync(Timeout.InfiniteTimeSpan, _ => Task.Delay(Timeout.Infinite), CancellationToken.None);
        Assert.False(await lane.RunAsync(TimeSpan.FromMilliseconds(50), _ => throw new InvalidOperationException("ran without a place"), CancellationToken.None));
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => lane.RunAsync(Timeout.InfiniteTimeSpan, _ => Task.CompletedTask, cancel.Token));

        // Work that fails still frees its place.
        endSecond.SetException(new InvalidOperationException("the commit failed"));
        await Assert.ThrowsAsync<InvalidOperationException>(() => second);
        Assert.Equal(1, lane.FreePlaces);
        Assert.False(blocked.IsCompleted);
    }

    [Fact]
    public async Task ClaimAhead_AddsPlacesBeyondTheThreads_AndAQueuedRunStartsTheMomentAThreadIsFree()
    {
        using var lane = NewLane(1, claimAhead: 1);
        Assert.Equal(2, lane.FreePlaces); // one running, one claimed ahead

        using var release = new ManualResetEventSlim();
        var first = lane.Start(_ =>
        {
            release.Wait();
            return ValueTask.FromResult(JsonSerializer.SerializeToElement(1));
        }, CancellationToken.None);
        var second = lane.Start(_ => ValueTask.FromResult(JsonSerializer.SerializeToElement(2)), CancellationToken.None);
        await first.Started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(50);
        Assert.False(second.Started.Task.IsCompleted); // queued behind the busy thread, not started

        var released = DateTimeOffset.UtcNow;
        release.Set();
        var startedAt = await second.Started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(startedAt >= released);
        Assert.Equal(2, (await second.Completion.Task).Output.GetInt32());
        Assert.True((await first.Completion.Task).WallMs >= 40); // the first ran the 50 ms it was held; the second's wall is its own
    }

    [Fact]
    public async Task TryWithdraw_KeepsAQueuedRunFromEverStarting_ButNotOneAThreadAlreadyTook()
    {
        using var lane = NewLane(1, claimAhead: 1);
        using var release = new ManualResetEventSlim();
        var running = lane.Start(_ =>
        {
            release.Wait();
            return ValueTask.FromResult(JsonSerializer.SerializeToElement(1));
        }, CancellationToken.None);
        var ranQueued = false;
        var queued = lane.Start(_ =>
        {
            ranQueued = true;
            return ValueTask.FromResult(JsonSerializer.SerializeToElement(2));
        }, CancellationToken.None);
        await running.Started.Task.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.False(running.TryWithdraw());
        Assert.True(queued.TryWithdraw());
        Assert.True(queued.TryWithdraw()); // still withdrawn
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued.Started.Task);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued.Completion.Task);

        release.Set();
        Assert.Equal(1, (await running.Completion.Task).Output.GetInt32());
        var after = lane.Start(_ => ValueTask.FromResult(JsonSerializer.SerializeToElement(3)), CancellationToken.None);
        Assert.Equal(3, (await after.Completion.Task.WaitAsync(TimeSpan.FromSeconds(10))).Output.GetInt32());
        Assert.False(ranQueued);
        Assert.Equal(0, lane.AbandonedThreads);
    }
}
