using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Fleet.Tasks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// The CPU lane: a fixed number of dedicated threads that run CPU-bound handlers. Keeping this work off the thread
/// pool means the message pump, heartbeats, database writes and I/O-lane handlers always find a free pool thread,
/// however busy the cores are; the number of threads bounds how many CPU tasks run at once. The lane has a place
/// for each thread and for each task claimed ahead (<c>Worker:CpuClaimAhead</c>): those wait, claimed and
/// prepared, in the lane's queue, and a thread that finishes a task takes the next one from it without waiting.
/// A handler that ignores its cancellation token past its time limit cannot be stopped (.NET cannot abort a
/// thread), so its thread is <em>abandoned</em>: a replacement thread takes its place in the lane at once, and the
/// stuck one ends by itself if the handler ever returns.
/// A stuck thread may burn a core, so replacements are bounded (<c>Worker:MaxAbandonedThreads</c>): past the bound
/// a stuck thread is not replaced, its place in the lane is withheld (no task is admitted that no thread would
/// run), the lane reports itself <see cref="Exhausted"/>, logs an error and stops the worker, so that its
/// supervisor starts a fresh process with exit code <see cref="ExhaustedExitCode"/>.
/// </summary>
public sealed partial class CpuLane : IDisposable
{
    /// <summary>The worker's exit code when it stopped itself because the lane was exhausted (EX_TEMPFAIL: start it again).</summary>
    public const int ExhaustedExitCode = 75;

    private readonly BlockingCollection<CpuRun> _queue = [];
    private readonly SemaphoreSlim _slots;
    private readonly ILogger? _logger;
    private readonly IHostApplicationLifetime? _lifetime;
    private int _threadCount;
    private int _liveThreads;
    private int _abandoned;
    private int _unreplaced;
    private int _withheld;
    private int _exhausted;

    /// <param name="options">The lane's threads (<c>CpuConcurrency</c>), tasks claimed ahead (<c>CpuClaimAhead</c>) and replacements (<c>MaxAbandonedThreads</c>).</param>
    /// <param name="logger">Where the lane reports that it is exhausted.</param>
    /// <param name="lifetime">Stopped when the lane is exhausted; without one the lane only shrinks.</param>
    public CpuLane(IOptions<WorkerOptions> options, ILogger<CpuLane>? logger = null, IHostApplicationLifetime? lifetime = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Concurrency = options.Value.CpuConcurrency;
        ClaimAhead = options.Value.EffectiveCpuClaimAhead;
        MaxAbandonedThreads = options.Value.EffectiveMaxAbandonedThreads;
        _logger = logger;
        _lifetime = lifetime;
        _slots = new SemaphoreSlim(Concurrency + ClaimAhead, Concurrency + ClaimAhead);
        for (var i = 0; i < Concurrency; i++)
        {
            StartThread();
        }
    }

    public int Concurrency { get; }

    /// <summary>Places beyond the threads: tasks claimed and queued while every thread is busy.</summary>
    public int ClaimAhead { get; }

    /// <summary>How many stuck threads may be replaced at once (<c>Worker:MaxAbandonedThreads</c>).</summary>
    public int MaxAbandonedThreads { get; }

    /// <summary>
    /// Threads stuck in handlers that ignored their time limit, replaced or not, that have not come back yet: at most
    /// <see cref="MaxAbandonedThreads"/> replaced ones plus <see cref="UnreplacedThreads"/>.
    /// </summary>
    public int AbandonedThreads => Volatile.Read(ref _abandoned) + Volatile.Read(ref _unreplaced);

    /// <summary>Stuck threads that were not replaced because the bound was reached: the lane runs that many fewer tasks.</summary>
    public int UnreplacedThreads => Volatile.Read(ref _unreplaced);

    /// <summary>Whether a stuck thread was ever left unreplaced; the worker then stops itself (once).</summary>
    public bool Exhausted => Volatile.Read(ref _exhausted) != 0;

    /// <summary>Lane threads started since the lane was created, replacements included.</summary>
    internal int StartedThreads => Volatile.Read(ref _threadCount);

    /// <summary>Lane threads that have not left yet (after <see cref="Dispose"/>, they leave once the queue is empty).</summary>
    internal int LiveThreads => Volatile.Read(ref _liveThreads);

    /// <summary>
    /// Runs <paramref name="work"/> in one of the lane's places (<see cref="Concurrency"/> plus <see cref="ClaimAhead"/>): waits up to
    /// <paramref name="wait"/> for a place, and returns false without running <paramref name="work"/> when none came.
    /// The place is freed when <paramref name="work"/> ends, or as soon as it calls the <see cref="Action"/> it is
    /// given (its handler is done), whichever comes first. A CPU-queue message takes its place before it is claimed,
    /// so the worker can hold more CPU messages (<c>Worker:CpuLookahead</c>) than it claims: a place is a claim, running
    /// or next in line. When a task ends, the next one is already claimed and prepared; without claiming ahead, a
    /// thread waited for the acknowledgement, a delivery and the claim (docs/decisions/0003), and then for the claim
    /// alone: a round trip to a busy PostgreSQL that left a lane thread idle a third of the time on 5 ms tasks.
    /// </summary>
    public async Task<bool> RunAsync(TimeSpan wait, Func<Action, Task> work, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (!await _slots.WaitAsync(wait, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        var place = new Place(this);
        try
        {
            await work(place.Leave).ConfigureAwait(false);
        }
        finally
        {
            place.Leave();
        }

        return true;
    }

    /// <summary>Places free now: <see cref="Concurrency"/> plus <see cref="ClaimAhead"/>, less those taken or withheld.</summary>
    internal int FreePlaces => _slots.CurrentCount;

    /// <summary>Queues <paramref name="task"/> for a lane thread; <see cref="CpuRun.Started"/> tells when one takes it.</summary>
    public CpuRun Start(PreparedTask task, CancellationToken cancellationToken)
    {
        var run = new CpuRun(this, task, cancellationToken);
        _queue.Add(run, CancellationToken.None);
        return run;
    }

    private void StartThread()
    {
        var thread = new Thread(Run) { IsBackground = true, Name = $"fleet-cpu-{Interlocked.Increment(ref _threadCount)}" };
        Interlocked.Increment(ref _liveThreads);
        thread.Start();
    }

    private void Run()
    {
        try
        {
            foreach (var run in _queue.GetConsumingEnumerable())
            {
                if (!run.Execute())
                {
                    // This thread was replaced while the handler ignored its time limit: leave the lane.
                    return;
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _liveThreads);
        }
    }

    /// <summary>
    /// Called, under the run's lock, for a run abandoned while its handler runs: starts a replacement thread unless
    /// <see cref="MaxAbandonedThreads"/> replaced ones are stuck already. Returns whether it did.
    /// </summary>
    private bool TryReplace()
    {
        for (var abandoned = Volatile.Read(ref _abandoned); abandoned < MaxAbandonedThreads; abandoned = Volatile.Read(ref _abandoned))
        {
            if (Interlocked.CompareExchange(ref _abandoned, abandoned + 1, abandoned) == abandoned)
            {
                StartThread();
                return true;
            }
        }

        // Past the bound: the lane shrinks by this thread, and by its place, until the handler returns.
        Interlocked.Increment(ref _unreplaced);
        Interlocked.Increment(ref _withheld);
        if (Interlocked.Exchange(ref _exhausted, 1) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static lane => lane.StopWorker(), this, preferLocal: false);
        }

        return false;
    }

    /// <summary>An abandoned thread's handler returned at last; returns whether the thread stays in the lane.</summary>
    private bool Returned(bool replaced)
    {
        if (replaced)
        {
            Interlocked.Decrement(ref _abandoned);
            return false;
        }

        // Nobody took this thread's place: it serves the lane again, and its withheld place comes back.
        Interlocked.Decrement(ref _unreplaced);
        if (!TryTakeOne(ref _withheld))
        {
            _slots.Release();
        }

        return true;
    }

    /// <summary>A place leaves the lane: back to the next task, unless a stuck thread's place is still to be withheld.</summary>
    private void ReturnPlace()
    {
        if (Volatile.Read(ref _withheld) == 0 || !TryTakeOne(ref _withheld))
        {
            _slots.Release();
        }
    }

    private static bool TryTakeOne(ref int counter)
    {
        for (var n = Volatile.Read(ref counter); n > 0; n = Volatile.Read(ref counter))
        {
            if (Interlocked.CompareExchange(ref counter, n - 1, n) == n)
            {
                return true;
            }
        }

        return false;
    }

    private void StopWorker()
    {
        if (_logger is not null)
        {
            LogExhausted(_logger, AbandonedThreads, MaxAbandonedThreads, Concurrency - UnreplacedThreads, Concurrency, ExhaustedExitCode);
        }

        if (_lifetime is not null)
        {
            // A supervisor (Kubernetes, Compose's restart policy, systemd) starts a fresh process with a whole lane;
            // the drain hands the messages this worker holds back to the broker.
            Environment.ExitCode = ExhaustedExitCode;
            _lifetime.StopApplication();
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "CPU lane exhausted: {Stuck} threads are stuck in handlers that ignore their time limit, more than Worker:MaxAbandonedThreads ({Max}) may be replaced; the lane is down to {Threads} of {Concurrency} threads. Stopping the worker (exit code {ExitCode}) so that its supervisor starts a fresh one")]
    private static partial void LogExhausted(ILogger logger, int stuck, int max, int threads, int concurrency, int exitCode);

    /// <summary>
    /// Lets the lane threads leave once the queue is empty. The collection itself is deliberately not disposed:
    /// lane threads still waking from their wait (or an abandoned thread coming back) would touch it and throw
    /// an unhandled <see cref="ObjectDisposedException"/> on a dedicated thread, which ends the whole process.
    /// </summary>
    public void Dispose() => _queue.CompleteAdding();

    /// <summary>One taken place; it goes back once, however often it is left.</summary>
    private sealed class Place(CpuLane lane)
    {
        private int _released;

        public void Leave()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                lane.ReturnPlace();
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
        private bool _replaced;

        internal CpuRun(CpuLane lane, PreparedTask task, CancellationToken cancellationToken)
        {
            _lane = lane;
            _task = task;
            _cancellationToken = cancellationToken;
        }

        /// <summary>The handler's output, and the CPU and wall milliseconds it took on its thread.</summary>
        public TaskCompletionSource<(JsonElement Output, double? CpuMs, double WallMs)> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>
        /// Completes when a lane thread takes the run (with the time it did), and is cancelled when the run is
        /// withdrawn or abandoned before that: a task claimed ahead waits in the queue, and its time limit starts here.
        /// </summary>
        public TaskCompletionSource<DateTimeOffset> Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>
        /// Takes the run out of the queue if no thread has taken it yet: it will never start. Returns false when a
        /// thread has (the run goes on, and must be waited for or abandoned).
        /// </summary>
        public bool TryWithdraw()
        {
            lock (_gate)
            {
                if (_running || _done || _abandoned)
                {
                    return !_running && !_done; // withdrawn or abandoned before it started: it never will
                }

                _abandoned = true;
            }

            Started.TrySetCanceled();
            Completion.TrySetCanceled();
            return true;
        }

        /// <summary>
        /// Gives up on this run: the lane gets a replacement thread if the handler is still running (within
        /// <see cref="MaxAbandonedThreads"/>), and the run never starts if it has not yet.
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
                    _replaced = _lane.TryReplace();
                }
            }

            Started.TrySetCanceled();
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

            Started.TrySetResult(DateTimeOffset.UtcNow);
            if (_cancellationToken.IsCancellationRequested)
            {
                Completion.TrySetCanceled(_cancellationToken);
            }
            else
            {
                RunHandler();
            }

            bool replaced;
            lock (_gate)
            {
                _done = true;
                if (!_abandoned)
                {
                    return true;
                }

                replaced = _replaced;
            }

            return _lane.Returned(replaced);
        }

        private void RunHandler()
        {
            var cpuStart = ThreadCpuTime.NowMilliseconds();
            var wallStart = Stopwatch.GetTimestamp();
            try
            {
                var pending = _task(_cancellationToken);

                // CPU handlers complete synchronously; one that awaits still holds this thread, as a CPU task should.
                var output = pending.IsCompletedSuccessfully ? pending.Result : pending.AsTask().GetAwaiter().GetResult();
                Completion.TrySetResult((output, ThreadCpuTime.NowMilliseconds() - cpuStart, Stopwatch.GetElapsedTime(wallStart).TotalMilliseconds));
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
