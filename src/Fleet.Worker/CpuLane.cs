using System.Collections.Concurrent;
using System.Text.Json;
using Fleet.Tasks;
using Microsoft.Extensions.Options;

namespace Fleet.Worker;

/// <summary>
/// The CPU lane: a fixed number of dedicated threads that run CPU-bound handlers. Keeping this work off the thread
/// pool means the message pump, heartbeats, database writes and I/O-lane handlers always find a free pool thread,
/// however busy the cores are; the number of threads bounds how many CPU tasks run at once.
/// A handler that ignores its cancellation token past its time limit cannot be stopped (.NET cannot abort a
/// thread), so its thread is <em>abandoned</em>: a replacement thread takes its place in the lane at once, and the
/// stuck one ends by itself if the handler ever returns.
/// </summary>
public sealed class CpuLane : IDisposable
{
    private readonly BlockingCollection<CpuRun> _queue = [];
    private readonly SemaphoreSlim _slots;
    private int _threadCount;
    private int _abandoned;

    public CpuLane(IOptions<WorkerOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Concurrency = options.Value.CpuConcurrency;
        _slots = new SemaphoreSlim(Concurrency, Concurrency);
        for (var i = 0; i < Concurrency; i++)
        {
            StartThread();
        }
    }

    public int Concurrency { get; }

    /// <summary>Threads that were abandoned to a handler that ignored its time limit and have not come back yet.</summary>
    public int AbandonedThreads => Volatile.Read(ref _abandoned);

    /// <summary>
    /// Waits for one of the lane's <see cref="Concurrency"/> places; dispose the result when the task has left the
    /// lane. A CPU-queue message takes its place before it is claimed, so the worker can hold more CPU messages
    /// than it has threads (<c>Worker:CpuLookahead</c>) without claiming more than it runs: when a task ends, the
    /// next one is already delivered and needs only its claim, instead of waiting for the acknowledgement, a
    /// delivery and the claim. That gap, a few milliseconds per task, cost a quarter of the cores on 25 ms tasks.
    /// </summary>
    public async ValueTask<IDisposable> EnterAsync(CancellationToken cancellationToken)
    {
        await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        return new Place(_slots);
    }

    /// <summary>Queues <paramref name="task"/> for a lane thread.</summary>
    public CpuRun Start(PreparedTask task, CancellationToken cancellationToken)
    {
        var run = new CpuRun(this, task, cancellationToken);
        _queue.Add(run, CancellationToken.None);
        return run;
    }

    private void StartThread()
    {
        var thread = new Thread(Run) { IsBackground = true, Name = $"fleet-cpu-{Interlocked.Increment(ref _threadCount)}" };
        thread.Start();
    }

    private void Run()
    {
        foreach (var run in _queue.GetConsumingEnumerable())
        {
            if (!run.Execute())
            {
                // This thread was replaced while the handler ignored its time limit: leave the lane.
                Interlocked.Decrement(ref _abandoned);
                return;
            }
        }
    }

    private void Replace()
    {
        Interlocked.Increment(ref _abandoned);
        StartThread();
    }

    /// <summary>
    /// Lets the lane threads leave once the queue is empty. The collection itself is deliberately not disposed:
    /// lane threads still waking from their wait (or an abandoned thread coming back) would touch it and throw
    /// an unhandled <see cref="ObjectDisposedException"/> on a dedicated thread, which ends the whole process.
    /// </summary>
    public void Dispose() => _queue.CompleteAdding();

    private sealed class Place(SemaphoreSlim slots) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                slots.Release();
            }
        }
    }

    /// <summary>One task on the lane: its completion, and the means to abandon it.</summary>
    public sealed class CpuRun
    {
        private readonly CpuLane _lane;
        private readonly PreparedTask _task;
        private readonly CancellationToken _cancellationToken;
        private readonly Lock _gate = new();
        private bool _running;
        private bool _done;
        private bool _abandoned;

        internal CpuRun(CpuLane lane, PreparedTask task, CancellationToken cancellationToken)
        {
            _lane = lane;
            _task = task;
            _cancellationToken = cancellationToken;
        }

        /// <summary>The handler's output and the CPU milliseconds its thread used.</summary>
        public TaskCompletionSource<(JsonElement Output, double? CpuMs)> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>
        /// Gives up on this run: the lane gets a replacement thread if the handler is still running, and the run
        /// never starts if it has not yet.
        /// </summary>
        public void Abandon()
        {
            lock (_gate)
            {
                if (_done || _abandoned)
                {
                    return;
                }

                _abandoned = true;
                if (_running)
                {
                    _lane.Replace();
                }
            }

            Completion.TrySetCanceled();
        }

        /// <summary>Runs on a lane thread; returns false when that thread was replaced meanwhile and must leave.</summary>
        internal bool Execute()
        {
            lock (_gate)
            {
                if (_abandoned)
                {
                    return true;
                }

                _running = true;
            }

            if (_cancellationToken.IsCancellationRequested)
            {
                Completion.TrySetCanceled(_cancellationToken);
            }
            else
            {
                RunHandler();
            }

            lock (_gate)
            {
                _done = true;
                return !_abandoned;
            }
        }

        private void RunHandler()
        {
            var cpuStart = ThreadCpuTime.NowMilliseconds();
            try
            {
                var pending = _task(_cancellationToken);

                // CPU handlers complete synchronously; one that awaits still holds this thread, as a CPU task should.
                var output = pending.IsCompletedSuccessfully ? pending.Result : pending.AsTask().GetAwaiter().GetResult();
                Completion.TrySetResult((output, ThreadCpuTime.NowMilliseconds() - cpuStart));
            }
            catch (OperationCanceledException ex) when (_cancellationToken.IsCancellationRequested)
            {
                Completion.TrySetCanceled(ex.CancellationToken);
            }
#pragma warning disable CA1031 // A handler's failure, of any type, is the task's result, not the lane's.
            catch (Exception ex) // also an OperationCanceledException of another token (HttpClient.Timeout): it keeps its message
#pragma warning restore CA1031
            {
                Completion.TrySetException(ex);
            }
        }
    }
}
