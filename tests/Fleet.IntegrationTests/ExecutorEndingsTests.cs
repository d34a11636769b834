using Fleet.Client;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// Handlers that fail in ways the executor once took for something else end in the right final state, in the
/// in-process worker (fault-injection task types enabled), and leave nothing in the error queue.
/// </summary>
public sealed class ExecutorEndingsTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task APrepareWithABug_EndsFailedWithTheExceptionAtOnce_AndTheMessageIsNotFaulted()
    {
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-prepare-bug", new { }) with { MaxAttempts = 3 });

        await WaitForFinalAsync([id], TimeSpan.FromSeconds(20));

        var info = await GetTaskAsync(id);
        Assert.Equal(("failed", "System.FormatException", 1), (info!.Status, info.ErrorType, info.Attempts));
        Assert.Contains("Injected parsing bug", info.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(["failed"], await ListAsync(
            "SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", id)));
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io_error"));
    }

    [Fact]
    public async Task AHandlersOwnTimeoutException_IsRetried_AndEndsFailedWithIt_NotTimedOut()
    {
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-timeout", new { }) with { MaxAttempts = 2 });

        await WaitForFinalAsync([id], TimeSpan.FromSeconds(20));

        var info = await GetTaskAsync(id);
        Assert.Equal(("failed", "System.TimeoutException", 2), (info!.Status, info.ErrorType, info.Attempts));
        Assert.Contains("handler's own timeout", info.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(["failed", "failed"], await ListAsync(
            "SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", id)));
    }
}
