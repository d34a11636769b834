using System.Collections.Concurrent;
using System.Reflection;
using System.Text.Json;
using Fleet.Contracts;
using Fleet.Worker;
using Fleet.Worker.MessagePath;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace Fleet.UnitTests;

/// <summary>
/// The retry scheduler against a channel that misbehaves on demand (a publisher confirm that never comes, a publish
/// or a declare that fails): every call ends within its time, none waits behind another's confirm, and a failure is
/// reported as false, never as an exception the consumer would turn into an _error message.
/// </summary>
public sealed class RetrySchedulerTests : IAsyncDisposable
{
    private readonly ConcurrentQueue<FakeChannel> _opened = new();
    private readonly LogRecorder _log = new();
    private Action<FakeChannel> _configure = _ => { };
    private readonly WorkerMetrics _metrics = new(null, Options.Create(new WorkerOptions()));
    private RetryScheduler? _scheduler;

    public async ValueTask DisposeAsync()
    {
        if (_scheduler is not null)
        {
            await _scheduler.DisposeAsync();
        }

        _metrics.Dispose();
    }

    [Fact]
    public async Task OneRetryWhoseConfirmNeverComes_DoesNotHoldBackAnother()
    {
        var stuck = Message();
        _configure = channel => channel.Publish = (id, token) => id == stuck.TaskId ? Task.Delay(Timeout.Infinite, token) : Task.CompletedTask;
        var scheduler = NewScheduler(timeoutSeconds: 60);

        var first = scheduler.ScheduleAsync(TaskQueues.Io, stuck, TimeSpan.FromSeconds(1), CancellationToken.None);
        Assert.True(SpinWait.SpinUntil(() => _opened.Single().Publishes == 1, TimeSpan.FromSeconds(5)), "the first retry was never published");
        var second = scheduler.ScheduleAsync(TaskQueues.Io, Message(), TimeSpan.FromSeconds(1), CancellationToken.None);

        Assert.True(await second.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.False(first.IsCompleted);
    }

    [Fact]
    public async Task ARetryWhoseConfirmNeverComes_ReportsFalseAfterTheTimeout_LoggedAndCounted()
    {
        _configure = channel => channel.Publish = (_, token) => Task.Delay(Timeout.Infinite, token);
        var scheduler = NewScheduler(timeoutSeconds: 1);
        var message = Message();

        var scheduled = await scheduler.ScheduleAsync(TaskQueues.Io, message, TimeSpan.FromSeconds(1), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.False(scheduled);
        Assert.Equal(1, _metrics.RetryPublishFailures);
        var line = Assert.Single(_log.Errors);
        Assert.Contains(message.TaskId.ToString(), line, StringComparison.Ordinal);
        Assert.Contains("not confirmed within 1 s", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARefusedPublish_ReportsFalse_AndTheNextRetryOpensANewChannel()
    {
        _configure = channel =>
        {
            if (_opened.Count == 1)
            {
                // The broker closed the channel (a channel error): the publish fails and the channel is no longer open.
                channel.Publish = (_, _) =>
                {
                    channel.Open = false;
                    throw new InvalidOperationException("The channel was closed by the broker.");
                };
            }
        };
        var scheduler = NewScheduler(timeoutSeconds: 5);

        Assert.False(await scheduler.ScheduleAsync(TaskQueues.Cpu, Message(), TimeSpan.FromSeconds(2), CancellationToken.None));
        Assert.True(await scheduler.ScheduleAsync(TaskQueues.Cpu, Message(), TimeSpan.FromSeconds(2), CancellationToken.None));

        Assert.Equal(2, _opened.Count);
        Assert.Contains("InvalidOperationException: The channel was closed by the broker.", Assert.Single(_log.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARefusedDeclare_ReportsFalse_AndTheDelayQueueIsDeclaredAgainNextTime()
    {
        _configure = channel =>
        {
            if (_opened.Count == 1)
            {
                channel.Declare = _ => throw new InvalidOperationException("ACCESS_REFUSED");
            }
        };
        var scheduler = NewScheduler(timeoutSeconds: 5);

        Assert.False(await scheduler.ScheduleAsync(TaskQueues.Io, Message(), TimeSpan.FromSeconds(1), CancellationToken.None));
        Assert.True(await scheduler.ScheduleAsync(TaskQueues.Io, Message(), TimeSpan.FromSeconds(1), CancellationToken.None));

        Assert.Equal(["fleet-io.retry.1s"], _opened.Last().Declared);
    }

    [Fact]
    public async Task WhenTheWorkerStops_AWaitingRetryIsCancelled_NotReportedAsAFailure()
    {
        // The consumer then leaves the message unacknowledged, and the broker hands it to another worker.
        _configure = channel => channel.Publish = (_, token) => Task.Delay(Timeout.Infinite, token);
        var scheduler = NewScheduler(timeoutSeconds: 60);
        using var stopping = new CancellationTokenSource();

        var scheduled = scheduler.ScheduleAsync(TaskQueues.Io, Message(), TimeSpan.FromSeconds(1), stopping.Token);
        await stopping.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => scheduled.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0, _metrics.RetryPublishFailures);
    }

    [Fact]
    public void TheDelayQueues_AreTheRungsRungForChoosesFrom_ShortestFirst()
    {
        var names = RetryScheduler.QueueNames(TaskQueues.Cpu);

        Assert.Equal(["fleet-cpu.retry.1s", "fleet-cpu.retry.2s", "fleet-cpu.retry.4s"], names.Take(3));
        Assert.Equal("fleet-cpu.retry.4096s", names[^1]);
        Assert.Equal(RetryScheduler.RungSeconds.Count, names.Count);
        Assert.Equal("fleet-cpu.retry.4s", RetryScheduler.RungFor(TaskQueues.Cpu, TimeSpan.FromSeconds(3)));
        Assert.Equal(names[^1], RetryScheduler.RungFor(TaskQueues.Cpu, TimeSpan.FromHours(3)));
        Assert.All(Enumerable.Range(0, 5000).Select(s => RetryScheduler.RungFor(TaskQueues.Cpu, TimeSpan.FromSeconds(s))), rung => Assert.Contains(rung, names));
    }

    private RetryScheduler NewScheduler(int timeoutSeconds)
    {
        _scheduler = new RetryScheduler(
            Options.Create(new WorkerOptions { RetryPublishTimeoutSeconds = timeoutSeconds }),
            _ =>
            {
                var channel = FakeChannel.Create();
                _opened.Enqueue(channel);
                _configure(channel);
                return Task.FromResult<(IConnection?, IChannel)>((null, (IChannel)(object)channel));
            },
            _log,
            _metrics);
        return _scheduler;
    }

    private static ProcessTask Message() => new() { TaskId = Guid.NewGuid(), Type = "noop", Payload = JsonSerializer.SerializeToElement(new { }) };

    /// <summary>
    /// An <see cref="IChannel"/> with what the scheduler uses (IsOpen, QueueDeclareAsync, BasicPublishAsync, dispose);
    /// publishes run <see cref="Publish"/> with the task id and the call's token.
    /// </summary>
    public class FakeChannel : DispatchProxy
    {
        private int _publishes;

        public volatile bool Open = true;

        public Func<Guid, CancellationToken, Task> Publish { get; set; } = (_, _) => Task.CompletedTask;

        public Action<string> Declare { get; set; } = _ => { };

        public ConcurrentQueue<string> Declared { get; } = new();

        public int Publishes => Volatile.Read(ref _publishes);

        public static FakeChannel Create() => (FakeChannel)(object)Create<IChannel, FakeChannel>();

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            ArgumentNullException.ThrowIfNull(targetMethod);
            ArgumentNullException.ThrowIfNull(args);
            switch (targetMethod.Name)
            {
                case "get_IsOpen":
                    return Open;
                case nameof(IChannel.QueueDeclareAsync):
                    var queue = (string)args[0]!;
                    Declare(queue);
                    Declared.Enqueue(queue);
                    return Task.FromResult(new QueueDeclareOk(queue, 0, 0));
                case nameof(IChannel.BasicPublishAsync):
                    Interlocked.Increment(ref _publishes);
                    return new ValueTask(Publish(TaskIdOf((ReadOnlyMemory<byte>)args[4]!), (CancellationToken)args[5]!));
                case nameof(IAsyncDisposable.DisposeAsync):
                    Open = false;
                    return ValueTask.CompletedTask;
                case nameof(IDisposable.Dispose):
                    Open = false;
                    return null;
                default:
                    throw new NotSupportedException($"The fake channel has no {targetMethod.Name}.");
            }
        }

        private static Guid TaskIdOf(ReadOnlyMemory<byte> body)
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.GetProperty("taskId").GetGuid();
        }
    }

    private sealed class LogRecorder : ILogger
    {
        private readonly ConcurrentQueue<string> _errors = new();

        public IReadOnlyList<string> Errors => [.. _errors];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Error)
            {
                _errors.Enqueue(formatter(state, exception));
            }
        }
    }
}
