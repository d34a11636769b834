using Fleet.Client;
using Fleet.Contracts;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// Owns the receive endpoints of this worker's lanes (each lane and its dispatch queue) and keeps them consuming
/// only while the lane is not paused in <c>fleet.queue_pauses</c>, read every <c>Worker:PauseCheckSeconds</c>.
/// <para>
/// The endpoints are connected to the running bus (<see cref="IReceiveEndpointConnector"/>) instead of being
/// configured with it, because a bus starts every configured endpoint: a worker started while a lane is paused
/// must never consume from it. A pause stops the lane's endpoints through their <see cref="HostReceiveEndpointHandle"/>,
/// which cancels the broker consumer and removes the endpoints from the bus: RabbitMQ keeps the lane's messages
/// ready, for no one until the resume. The stop waits for the messages in flight, which finish and are
/// acknowledged as usual; deliveries the stopping consumer had not started go back to the queue unacknowledged
/// when its channel closes. A resume connects the endpoints again with the same settings; a resume that comes
/// while a pause's in-flight tasks still finish takes effect once they have.
/// </para>
/// <para>
/// A queue of <c>Worker:Queues</c> is consumed only once it is in <c>fleet.queues</c> (the built-in lanes always are;
/// a worker group's queue once the API has declared it), read at the same time: a worker started before the API has
/// written its declarations waits for them instead of failing its start, and says so once.
/// </para>
/// <para>
/// Until the table has been read once, no lane is consumed (a worker that cannot read its database could claim
/// nothing anyway). A failed read later keeps the lanes as they are.
/// </para>
/// </summary>
public sealed partial class LanePauses(
    IReceiveEndpointConnector connector,
    QueuePauses pauses,
    ServedQueues served,
    IOptions<WorkerOptions> options,
    Action<IBusRegistrationContext, IReceiveEndpointConfigurator, string> configureEndpoint,
    ILogger<LanePauses> logger) : BackgroundService
{
    private readonly WorkerOptions _options = options.Value;
    private readonly Dictionary<string, Lane> _lanes = options.Value.Queues.ToDictionary(q => q, q => new Lane(q), StringComparer.Ordinal);

    // Cancelled Worker:DrainSeconds after the worker starts stopping: a pause's stop still waiting for its in-flight
    // tasks then hands them back to the broker, as the bus's own drain does with the endpoints it stops.
    private readonly CancellationTokenSource _drain = new();
    private bool _readFailing;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // Registered after MassTransit, so the bus has started: connect the lanes that are not paused before the
        // worker counts as started, as the bus would have started configured endpoints.
        var ready = await ApplyAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Task.WhenAll(ready).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The bus retries a faulted endpoint by itself; the worker starts and consumes once it is ready.
            LogNotReady(ex.GetType().Name, ex.Message);
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(_options.PauseCheckSeconds));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                await ApplyAsync(stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);

        // Lanes that consume are stopped by the bus, after this (its drain). A pause's stop still under way drains
        // for as long as the bus's would.
        Task[] stopping;
        lock (_lanes)
        {
            stopping = [.. _lanes.Values.Select(l => l.Transition).Where(t => !t.IsCompleted)];
        }

        _drain.CancelAfter(TimeSpan.FromSeconds(_options.DrainSeconds));
        await Task.WhenAll(stopping).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads the pauses and stops or connects lanes to match; returns the Ready tasks of the lanes connected.</summary>
    private async Task<List<Task>> ApplyAsync(CancellationToken cancellationToken)
    {
        var connected = new List<Task>();
        // One read of fleet.queues with each queue's pause: a queue without a row is not declared (yet).
        Dictionary<string, QueuePauseState> queues;
        try
        {
            queues = (await pauses.ListAsync(cancellationToken).ConfigureAwait(false)).ToDictionary(q => q.Queue, StringComparer.Ordinal);
            if (_readFailing)
            {
                _readFailing = false;
                LogReadRecovered();
            }
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is not OutOfMemoryException)
        {
            if (!_readFailing)
            {
                _readFailing = true;
                LogReadFailed(ex.GetType().Name, ex.Message);
            }

            return connected;
        }

        lock (_lanes)
        {
            foreach (var lane in _lanes.Values)
            {
                if (!lane.Transition.IsCompleted)
                {
                    continue;
                }

                if (queues.GetValueOrDefault(lane.Name)?.Lane is not { } kind)
                {
                    if (!lane.WasUndeclared)
                    {
                        lane.WasUndeclared = true;
                        LogUndeclared(lane.Name);
                    }

                    continue;
                }

                served.Add(lane.Name, kind);
                var pause = queues[lane.Name] is { Paused: true } paused ? paused : null;
                if (pause is null && lane.Handles is null)
                {
                    try
                    {
                        lane.Handles = [.. Queues(lane.Name).Select(Connect)];
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        // The bus is stopping, or refused the endpoint: the next check tries again.
                        LogConnectFailed(lane.Name, ex.GetType().Name, ex.Message);
                        continue;
                    }

                    connected.AddRange(lane.Handles.Select(h => (Task)h.Ready));
                    if (lane.WasPaused)
                    {
                        LogResumed(lane.Name);
                    }

                    if (lane.WasUndeclared)
                    {
                        lane.WasUndeclared = false;
                        LogDeclared(lane.Name, kind);
                    }

                    lane.WasPaused = false;
                }
                else if (pause is not null && lane.Handles is not null)
                {
                    var handles = lane.Handles;
                    lane.Handles = null;
                    lane.WasPaused = true;
                    LogPausing(lane.Name, pause.Reason ?? "-");
                    lane.Transition = StopAsync(lane.Name, handles);
                }
                else if (pause is not null && !lane.WasPaused)
                {
                    lane.WasPaused = true;
                    LogStartedPaused(lane.Name, pause.Reason ?? "-");
                }
            }
        }

        return connected;
    }

    private async Task StopAsync(string lane, HostReceiveEndpointHandle[] handles)
    {
        try
        {
            await Task.WhenAll(handles.Select(h => h.StopAsync(_drain.Token))).ConfigureAwait(false);
            LogPaused(lane);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A stop that failed (the drain ran out, the channel was gone) has still removed the endpoints: the
            // broker requeues whatever they held when their channel closes.
            LogStopFailed(lane, ex.GetType().Name, ex.Message);
        }
    }

    private static string[] Queues(string lane) => [lane, TaskQueues.DispatchQueueOf(lane)];

    private HostReceiveEndpointHandle Connect(string queue) =>
        connector.ConnectReceiveEndpoint(queue, (context, endpoint) => configureEndpoint(context, endpoint, queue));

    public override void Dispose()
    {
        _drain.Dispose();
        base.Dispose();
    }

    private sealed class Lane(string name)
    {
        public string Name { get; } = name;

        /// <summary>True once the queue was found missing from fleet.queues, so that it is said once, and its arrival too.</summary>
        public bool WasUndeclared { get; set; }

        /// <summary>The lane's and its dispatch queue's endpoints while they consume; null while paused (or not yet read).</summary>
        public HostReceiveEndpointHandle[]? Handles { get; set; }

        /// <summary>A pause's stop under way: nothing else happens to the lane until it ends.</summary>
        public Task Transition { get; set; } = Task.CompletedTask;

        public bool WasPaused { get; set; }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Queue {Lane} of Worker:Queues is not declared (no row in fleet.queues): this worker consumes it once the API declares it in Api:Queues")]
    private partial void LogUndeclared(string lane);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Queue {Lane} is declared (lane {Kind}): this worker consumes it")]
    private partial void LogDeclared(string lane, string kind);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lane {Lane} is paused ({Reason}): this worker stops consuming it and its dispatch queue; its tasks in flight finish first")]
    private partial void LogPausing(string lane, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Lane {Lane} paused: its tasks in flight here have finished, and it is not consumed until resumed")]
    private partial void LogPaused(string lane);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lane {Lane} is paused ({Reason}): this worker does not consume it until it is resumed")]
    private partial void LogStartedPaused(string lane, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lane {Lane} resumed: this worker consumes it and its dispatch queue again")]
    private partial void LogResumed(string lane);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stopping the paused lane {Lane} failed ({Error}: {Message}); its endpoints are removed and the broker requeues what they held")]
    private partial void LogStopFailed(string lane, string error, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Connecting lane {Lane} failed ({Error}: {Message}); trying again at the next pause check")]
    private partial void LogConnectFailed(string lane, string error, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reading fleet.queue_pauses failed ({Error}: {Message}); the lanes stay as they are (none is consumed before a first read)")]
    private partial void LogReadFailed(string error, string message);

    [LoggerMessage(Level = LogLevel.Information, Message = "Reading fleet.queue_pauses works again")]
    private partial void LogReadRecovered();

    [LoggerMessage(Level = LogLevel.Warning, Message = "A lane's endpoint was not ready at start ({Error}: {Message}); the bus keeps trying")]
    private partial void LogNotReady(string error, string message);
}
