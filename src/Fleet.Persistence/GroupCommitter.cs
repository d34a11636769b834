using System.Diagnostics;
using System.Threading.Channels;

namespace Fleet.Persistence;

/// <summary>
/// Group commit: callers enqueue one item each and await its result; a few flush loops take everything that has
/// queued up (up to <c>maxBatch</c>) and write it in one round trip. Idle, an item is written at once (latency of
/// one round trip); under load, batches grow by themselves and the database does one statement per batch
/// instead of one per task. This is what lets a worker acknowledge each message only after its own row is
/// committed without paying a transaction per message.
/// <para>
/// Tracing: a batch serves many traces, so it cannot be a child of any one of them. Each item remembers the trace
/// context it was enqueued in (a struct copy, no allocation); when <c>activityName</c> is given and someone listens
/// to <see cref="PersistenceTelemetry.Source"/>, each flush runs in a root span of that name with a link to every
/// item's span, and the database client spans of the flush are its children.
/// </para>
/// </summary>
public sealed class GroupCommitter<TItem, TResult> : IAsyncDisposable
{
    private readonly Channel<Entry> _channel = Channel.CreateUnbounded<Entry>(new UnboundedChannelOptions { SingleReader = false });
    private readonly Func<IReadOnlyList<TItem>, CancellationToken, Task<IReadOnlyList<TResult>>> _flush;
    private readonly int _maxBatch;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task[] _loops;
    private readonly string? _activityName;
    private readonly TimeSpan _disposeGrace;

    /// <param name="flush">Writes a batch and returns one result per item, in order. An exception fails every item of the batch.</param>
    /// <param name="maxBatch">The largest batch one flush takes.</param>
    /// <param name="concurrentFlushes">Flushes in flight at once, so that one batch gathers while another is written.</param>
    /// <param name="activityName">The name of each flush's span (see the class remarks); null for none.</param>
    /// <param name="disposeGrace">How long <see cref="DisposeAsync"/> lets the last flushes run before it cancels them (default 5 s).</param>
    public GroupCommitter(
        Func<IReadOnlyList<TItem>, CancellationToken, Task<IReadOnlyList<TResult>>> flush,
        int maxBatch = 500,
        int concurrentFlushes = 2,
        string? activityName = null,
        TimeSpan? disposeGrace = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrentFlushes, 1);
        _flush = flush;
        _maxBatch = maxBatch;
        _activityName = activityName;
        _disposeGrace = disposeGrace ?? TimeSpan.FromSeconds(5);

        // The loops outlive whoever created this (often the first message's consumer): without this they would
        // run for ever in that caller's execution context, with its Activity.Current and log scopes, and every
        // later batch would be traced and logged as part of that first task.
        using (ExecutionContext.SuppressFlow())
        {
            _loops = [.. Enumerable.Range(0, concurrentFlushes).Select(_ => Task.Run(LoopAsync))];
        }
    }

    /// <summary>Queues <paramref name="item"/>; the task completes when the batch holding it is committed.</summary>
    public Task<TResult> EnqueueAsync(TItem item)
    {
        var completion = new TaskCompletionSource<TResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_channel.Writer.TryWrite(new Entry(item, completion, Activity.Current?.Context ?? default)))
        {
            completion.SetException(new ObjectDisposedException(nameof(GroupCommitter<TItem, TResult>)));
        }

        return completion.Task;
    }

    private async Task LoopAsync()
    {
        var batch = new List<Entry>(_maxBatch);
        var items = new List<TItem>(_maxBatch);
        var reader = _channel.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (batch.Count < _maxBatch && reader.TryRead(out var entry))
            {
                batch.Add(entry);
                items.Add(entry.Item);
            }

            if (batch.Count == 0)
            {
                continue;
            }

            using var activity = StartFlushActivity(batch);
            try
            {
                var results = await _flush(items, _stopping.Token).ConfigureAwait(false);
                for (var i = 0; i < batch.Count; i++)
                {
                    batch[i].Completion.TrySetResult(results[i]);
                }
            }
#pragma warning disable CA1031 // Every failure, whatever its type, belongs to the callers waiting on this batch.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
                foreach (var entry in batch)
                {
                    entry.Completion.TrySetException(ex);
                }
            }

            batch.Clear();
            items.Clear();
        }
    }

    /// <summary>A root span for one flush, linked to the traced items; null (and no allocation) when nobody listens.</summary>
    private Activity? StartFlushActivity(List<Entry> batch)
    {
        if (_activityName is null || !PersistenceTelemetry.Source.HasListeners())
        {
            return null;
        }

        var links = new List<ActivityLink>();
        foreach (var entry in batch)
        {
            if (entry.Trace != default)
            {
                links.Add(new ActivityLink(entry.Trace));
            }
        }

        var activity = PersistenceTelemetry.Source.StartActivity(ActivityKind.Internal, parentContext: default, links: links, name: _activityName);
        activity?.SetTag("fleet.batch.size", batch.Count);
        return activity;
    }

    /// <summary>
    /// Stops accepting items, writes what is queued, then stops. Flushes still running after the grace (one waiting
    /// for a database that does not answer, say) are cancelled, and so are the items still queued: their callers get
    /// the cancellation, and disposal, with the stop of the process, is bounded.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        _channel.Writer.TryComplete();
        var loops = Task.WhenAll(_loops);
        try
        {
            await loops.WaitAsync(_disposeGrace).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            await _stopping.CancelAsync().ConfigureAwait(false);
            await loops.ConfigureAwait(false);
        }

        _stopping.Dispose();
    }

    private readonly record struct Entry(TItem Item, TaskCompletionSource<TResult> Completion, ActivityContext Trace);
}
