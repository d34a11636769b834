using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using Fleet.Tasks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Fleet.Worker.ProcessLane;

/// <summary>
/// The process lane: up to <see cref="Slots"/> child processes per worker, each running one task at a time, for the
/// types in <c>Worker:ProcessTypes</c> and those whose handler carries <see cref="ProcessLaneAttribute"/>. A child
/// can be stopped for real, where a thread cannot: at a task's time limit (or a cancel) the child is asked to cancel,
/// and killed (SIGKILL) when it has not answered within <c>Worker:ProcessKillGraceSeconds</c>; a child over
/// <c>Worker:ProcessMaxRssMb</c> is killed during its task (the task fails, final) or recycled between tasks; a
/// child is recycled after <c>Worker:ProcessMaxTasks</c> tasks. A child that dies takes only its own task with it
/// (retried, with the exit code or signal in the error). Children start lazily, as tasks need them, and a killed or
/// dead one is replaced by the next task that needs one.
/// </summary>
public sealed partial class ProcessPool : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan ExitWait = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan MemoryPoll = TimeSpan.FromMilliseconds(200);

    private readonly FrozenSet<string> _types;
    private readonly SemaphoreSlim _free;
    private readonly ConcurrentStack<Child> _idle = new();
    private readonly ConcurrentDictionary<int, Child> _live = new();
    private readonly TimeSpan _killGrace;
    private readonly long _maxRssBytes;
    private readonly int _maxTasks;
    private readonly (string FileName, string[] Arguments) _command;
    private readonly ILogger<ProcessPool> _logger;
    private int _busy;
    private long _started;
    private long _killedAtLimit;
    private long _killedForMemory;
    private long _died;
    private long _recycled;
    private volatile bool _disposed;

    public ProcessPool(IOptions<WorkerOptions> options, TaskHandlerRegistry registry, ILogger<ProcessPool> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(registry);
        var worker = options.Value;
        var types = new HashSet<string>(worker.ProcessTypes.Select(t => t.Trim()), StringComparer.Ordinal);
        foreach (var type in registry.Types)
        {
            if (registry.TryGet(type, out var handler) && handler.GetType().GetCustomAttribute<ProcessLaneAttribute>() is not null)
            {
                types.Add(type);
            }
        }

        _types = types.ToFrozenSet(StringComparer.Ordinal);
        // Without a type to run there is no lane: 0 slots, rather than capacity that no task can ever use.
        Slots = _types.Count == 0 ? 0 : worker.EffectiveProcessConcurrency;
        _free = new SemaphoreSlim(Slots, Math.Max(1, Slots));
        _killGrace = TimeSpan.FromSeconds(worker.ProcessKillGraceSeconds);
        _maxRssBytes = worker.ProcessMaxRssMb * 1024L * 1024L;
        _maxTasks = worker.ProcessMaxTasks;
        _command = ChildCommand(worker.ProcessChildPath);
        _logger = logger;
    }

    /// <summary>The task types this worker runs in child processes, sorted.</summary>
    public IReadOnlyList<string> Types => [.. _types.Order(StringComparer.Ordinal)];

    /// <summary>Children that may run at once (<c>Worker:ProcessConcurrency</c>); 0 when no type runs in the process lane.</summary>
    public int Slots { get; }

    /// <summary>Tasks running in a child, or waiting for one to start, now.</summary>
    public int Busy => Volatile.Read(ref _busy);

    /// <summary>Children alive now, busy or idle.</summary>
    public int LiveChildren => _live.Count;

    /// <summary>Children started since the worker started (the first ones, and every replacement).</summary>
    public long ChildrenStarted => Interlocked.Read(ref _started);

    /// <summary>Children killed because a task's time limit or a cancel fired and the child did not stop in its grace.</summary>
    public long KilledAtLimit => Interlocked.Read(ref _killedAtLimit);

    /// <summary>Children killed because they grew past <c>Worker:ProcessMaxRssMb</c> while running a task.</summary>
    public long KilledForMemory => Interlocked.Read(ref _killedForMemory);

    /// <summary>Children that died by themselves (crash, fail-fast, OOM killer) while running a task or while idle with one on its way.</summary>
    public long Died => Interlocked.Read(ref _died);

    /// <summary>Children retired between tasks: after <c>Worker:ProcessMaxTasks</c>, or over <c>Worker:ProcessMaxRssMb</c>.</summary>
    public long Recycled => Interlocked.Read(ref _recycled);

    /// <summary>Whether tasks of <paramref name="type"/> run in a child process here.</summary>
    public bool Runs(string type) => _types.Contains(type);

    /// <summary>
    /// The task as the executor runs any task: a delegate that sends it to a child and returns its output. It throws
    /// <see cref="TaskValidationException"/> for a payload the child's handler refused, <see cref="OperationCanceledException"/>
    /// when the handler stopped at its token, and <see cref="ProcessLaneException"/> for every other ending but success.
    /// The child's CPU time lands in <paramref name="timing"/>.
    /// </summary>
    /// The child runs the handler with a <see cref="TaskContext"/> like <paramref name="context"/>, and the progress it
    /// reports there comes back to <paramref name="context"/>'s sink.
    public PreparedTask Prepare(TaskContext context, JsonElement payload, ChildTiming timing)
    {
        ArgumentNullException.ThrowIfNull(context);
        var request = new ChildRequest(ChildRequest.Run, context.TaskId, context.Type, payload)
        {
            Attempt = context.Attempt,
            BatchId = context.BatchId,
            AfterTaskId = context.AfterTaskId,
            AfterBatchId = context.AfterBatchId,
        };
        return cancellationToken => new ValueTask<JsonElement>(RunAsync(request, context, timing, cancellationToken));
    }

    private async Task<JsonElement> RunAsync(ChildRequest request, TaskContext context, ChildTiming timing, CancellationToken limit)
    {
        await _free.WaitAsync(limit).ConfigureAwait(false);
        Interlocked.Increment(ref _busy);
        Child? child = null;
        try
        {
            child = TakeIdle() ?? await StartChildAsync(limit).ConfigureAwait(false);
            var reply = await RunInChildAsync(child, request, context, limit).ConfigureAwait(false);
            timing.CpuMs = reply.CpuMs;
            if (reply.Ok)
            {
                return reply.Output ?? default;
            }

            if (reply.Validation)
            {
                throw new TaskValidationException(reply.ErrorMessage ?? "The payload is not valid.");
            }

            if (reply.Refused)
            {
                throw new TaskRefusedException(reply.ErrorType ?? "TaskRefused", reply.ErrorMessage ?? "The task was refused.");
            }

            if (reply.Cancelled && limit.IsCancellationRequested)
            {
                throw new OperationCanceledException(reply.ErrorMessage, limit);
            }

            throw new ProcessLaneException(reply.ErrorType ?? "Exception", reply.ErrorMessage ?? "", retryable: true);
        }
        finally
        {
            Interlocked.Decrement(ref _busy);
            if (child is null)
            {
                _free.Release();
            }
            else
            {
                ReturnOrRetire(child);
            }
        }
    }

    /// <summary>Sends the task and waits for its outcome, the time limit, the memory limit or the child's death.</summary>
    private async Task<ChildReply> RunInChildAsync(Child child, ChildRequest request, TaskContext context, CancellationToken limit)
    {
        child.Tasks++;
        try
        {
            await ChildProtocol.WriteAsync(child.Input, request, CancellationToken.None).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // It died between two tasks: its exit says why; the task never started, and is retried.
            throw await DiedAsync(child, started: false).ConfigureAwait(false);
        }

        var reply = ReadOutcomeAsync(child.Output, context);
        var limitFired = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var onLimit = limit.Register(() => limitFired.TrySetResult()).ConfigureAwait(false);
        using var memory = new CancellationTokenSource();
        var overMemory = _maxRssBytes > 0 ? WatchMemoryAsync(child, memory.Token) : Task.Delay(Timeout.Infinite, memory.Token);
        try
        {
            var first = await Task.WhenAny(reply, limitFired.Task, overMemory).ConfigureAwait(false);
            if (first == overMemory && overMemory.IsCompletedSuccessfully)
            {
                var rss = ProcessRssBytes(child.Pid);
                Kill(child);
                Interlocked.Increment(ref _killedForMemory);
                throw new ProcessLaneException(ProcessLaneErrorTypes.MemoryLimit,
                    $"The task's child process (pid {child.Pid}) grew to {Megabytes(rss)} MB, over Worker:ProcessMaxRssMb ({_maxRssBytes / 1048576} MB); it was killed.",
                    retryable: false);
            }

            if (first == limitFired.Task)
            {
                // Asked first: a handler that honours its token ends as cancelled and its child lives on.
                try
                {
                    await ChildProtocol.WriteAsync(child.Input, new ChildRequest(ChildRequest.Cancel, request.TaskId), CancellationToken.None).ConfigureAwait(false);
                }
                catch (IOException)
                {
                    // Already gone: the read below ends with its death.
                }

                if (await Task.WhenAny(reply, Task.Delay(_killGrace, CancellationToken.None)).ConfigureAwait(false) != reply)
                {
                    Kill(child);
                    Interlocked.Increment(ref _killedAtLimit);
                    throw new ProcessLaneException(ProcessLaneErrorTypes.ChildDied,
                        $"its child process (pid {child.Pid}) did not stop within Worker:ProcessKillGraceSeconds ({_killGrace.TotalSeconds:0.#} s) and was killed.",
                        retryable: false)
                    { KilledAtLimit = true };
                }
            }

            return await reply.ConfigureAwait(false) ?? throw await DiedAsync(child, started: true).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or JsonException)
        {
            // A broken pipe or a garbled frame: the child is not usable any more, whatever it was doing.
            Kill(child);
            throw new ProcessLaneException(ProcessLaneErrorTypes.ChildDied, $"The task's child process (pid {child.Pid}) broke the process-lane protocol: {ex.Message}", retryable: true);
        }
        finally
        {
            await memory.CancelAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The task's outcome frame, or null when the child's output ended. Progress frames on the way are the handler's
    /// reports: they go to the context's sink, as a report in the worker would. One of another task (sent by the child
    /// just before that task's outcome) is dropped.
    /// </summary>
    private static async Task<ChildReply?> ReadOutcomeAsync(Stream output, TaskContext context)
    {
        while (await ChildProtocol.ReadAsync<ChildReply>(output, CancellationToken.None).ConfigureAwait(false) is { } reply)
        {
            if (reply.Op != ChildReply.Progress)
            {
                return reply;
            }

            if (reply.TaskId == context.TaskId && reply.Fraction is { } fraction)
            {
                context.ReportProgress(fraction, reply.Note);
            }
        }

        return null;
    }

    /// <summary>Completes when the child's RSS is over the limit; polled, since a leak grows over many milliseconds.</summary>
    private async Task WatchMemoryAsync(Child child, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(MemoryPoll);
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            if (ProcessRssBytes(child.Pid) > _maxRssBytes)
            {
                return;
            }
        }
    }

    /// <summary>The exception for a child that died: its exit code or signal, counted; the task is retried.</summary>
    private async Task<ProcessLaneException> DiedAsync(Child child, bool started)
    {
        child.Dead = true;
        var exit = await ExitTextAsync(child).ConfigureAwait(false);
        Interlocked.Increment(ref _died);
        LogChildDied(child.Pid, exit);
        return new ProcessLaneException(ProcessLaneErrorTypes.ChildDied,
            started
                ? $"The task's child process (pid {child.Pid}) died while it ran the task: {exit}."
                : $"The child process (pid {child.Pid}) had died before the task reached it: {exit}.",
            retryable: true);
    }

    private static async Task<string> ExitTextAsync(Child child)
    {
        using var wait = new CancellationTokenSource(ExitWait);
        try
        {
            await child.Process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            child.Process.Kill();
            return "it stopped answering and was killed";
        }

        // .NET reports a child ended by signal N as exit code 128 + N.
        var code = child.Process.ExitCode;
        return code > 128 && code < 128 + 65
            ? string.Create(CultureInfo.InvariantCulture, $"killed by signal {code - 128} ({SignalName(code - 128)}), exit code {code}")
            : string.Create(CultureInfo.InvariantCulture, $"exit code {code}");
    }

    private static string SignalName(int signal) => signal switch
    {
        4 => "SIGILL",
        6 => "SIGABRT: an abort or Environment.FailFast",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL: the kernel's OOM killer or another process",
        11 => "SIGSEGV: a segmentation fault",
        15 => "SIGTERM",
        _ => "signal",
    };

    private Child? TakeIdle()
    {
        while (_idle.TryPop(out var child))
        {
            if (!child.Dead && !child.Process.HasExited)
            {
                return child;
            }

            Forget(child);
        }

        return null;
    }

    /// <summary>
    /// After a task: back to the idle children, or retired (dead, killed, too many tasks, too big). Its slot is free
    /// again only once it is idle or gone: a killed or retiring child still holds its core and its memory until it
    /// has exited, and its replacement must not run beside it, or more than <see cref="Slots"/> children would live
    /// at once. The task's outcome does not wait for that.
    /// </summary>
    private void ReturnOrRetire(Child child)
    {
        if (child.Dead || child.Process.HasExited)
        {
            _ = ForgetWhenExitedAsync(child);
            return;
        }

        var tooMany = _maxTasks > 0 && child.Tasks >= _maxTasks;
        var tooBig = _maxRssBytes > 0 && ProcessRssBytes(child.Pid) > _maxRssBytes;
        if (tooMany || tooBig || _disposed)
        {
            if (!_disposed)
            {
                Interlocked.Increment(ref _recycled);
                LogRecycled(child.Pid, child.Tasks, tooBig ? "its RSS is over Worker:ProcessMaxRssMb" : "it ran Worker:ProcessMaxTasks tasks");
            }

            _ = RetireAsync(child);
            return;
        }

        _idle.Push(child);
        _free.Release();
    }

    /// <summary>Waits (a few seconds at most) until a killed or dead child has exited, then frees its slot.</summary>
    private async Task ForgetWhenExitedAsync(Child child)
    {
        using var wait = new CancellationTokenSource(ExitWait);
        try
        {
            await child.Process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException)
        {
            // Not reaped in time (a SIGKILL'd process ends anyway), or already forgotten by DisposeAsync: the slot
            // must not stay taken.
        }
        finally
        {
            Forget(child);
            _free.Release();
        }
    }

    /// <summary>Closes a child's input, which tells it to exit; kills it if it has not within a few seconds.</summary>
    private async Task RetireAsync(Child child)
    {
        child.Dead = true;
        try
        {
            child.Input.Close();
            using var wait = new CancellationTokenSource(ExitWait);
            await child.Process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or InvalidOperationException)
        {
            Kill(child);
        }
        finally
        {
            Forget(child);
            _free.Release();
        }
    }

    private void Kill(Child child)
    {
        child.Dead = true;
        try
        {
            child.Process.Kill(entireProcessTree: true);
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Already gone.
        }
    }

    private void Forget(Child child)
    {
        if (_live.TryRemove(child.Pid, out _))
        {
            child.Process.Dispose();
        }
    }

    private async Task<Child> StartChildAsync(CancellationToken limit)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var start = new ProcessStartInfo(_command.FileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = false, // shared with the worker: what a handler logs lands in the worker's log
            UseShellExecute = false,
        };
        foreach (var argument in _command.Arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment[ProcessLaneChild.ChildVariable] = "1";
        start.Environment[ProcessLaneChild.ParentVariable] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("Process.Start returned no process.");
        }
        catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            throw new ProcessLaneException(ProcessLaneErrorTypes.StartFailed,
                $"No process-lane child could be started ({_command.FileName} {string.Join(' ', _command.Arguments)}): {ex.Message}", retryable: true);
        }

        var child = new Child(process);
        _live[child.Pid] = child;
        Interlocked.Increment(ref _started);
        // A read from a pipe does not stop at a cancellation token: the wait does, and the kill ends the read.
        var reading = ChildProtocol.ReadAsync<ChildReply>(child.Output, CancellationToken.None);
        ChildReply? hello;
        try
        {
            hello = await reading.WaitAsync(StartTimeout, limit).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or IOException or InvalidDataException or JsonException)
        {
            Kill(child);
            Forget(child);
            if (ex is OperationCanceledException && limit.IsCancellationRequested)
            {
                throw;
            }

            throw new ProcessLaneException(ProcessLaneErrorTypes.StartFailed,
                $"The process-lane child (pid {child.Pid}) did not say it was ready within {StartTimeout.TotalSeconds:0} s: {ex.Message}", retryable: true);
        }

        if (hello?.Op != ChildReply.Ready)
        {
            var exit = await ExitTextAsync(child).ConfigureAwait(false);
            Forget(child);
            throw new ProcessLaneException(ProcessLaneErrorTypes.StartFailed,
                $"The process-lane child (pid {child.Pid}) ended before it was ready: {exit}. Its errors are in the worker's log.", retryable: true);
        }

        LogChildStarted(child.Pid);
        return child;
    }

    /// <summary>
    /// What a child runs: <c>Worker:ProcessChildPath</c> when set (a <c>.dll</c> through the <c>dotnet</c> that runs this
    /// worker), else this worker's own program with its own arguments.
    /// </summary>
    private static (string FileName, string[] Arguments) ChildCommand(string? configured)
    {
        var host = Environment.ProcessPath ?? "dotnet";
        var hostedByDotnet = Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.OrdinalIgnoreCase);
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return configured.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)
                ? (hostedByDotnet ? host : "dotnet", [configured])
                : (configured, []);
        }

        var arguments = Environment.GetCommandLineArgs();
        return hostedByDotnet
            ? (host, arguments) // dotnet Fleet.Worker.dll ARGS: the first argument is the program's dll
            : (host, arguments[1..]);
    }

    private static long ProcessRssBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            // Gone, or not Linux: no reading.
        }

        return 0;
    }

    private static string Megabytes(long bytes) => (bytes / 1048576.0).ToString("0", CultureInfo.InvariantCulture);

    /// <summary>Kills every child (the drain is over: what still runs in one is handed back by its consumer) and waits for them.</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        foreach (var child in _live.Values)
        {
            Kill(child);
        }

        foreach (var child in _live.Values)
        {
            using var wait = new CancellationTokenSource(ExitWait);
            try
            {
                await child.Process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Not reaped in time; the kernel ends it anyway.
            }

            Forget(child);
        }

        // _free is not disposed: children retiring or dying right now release their slots after this.
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Process-lane child {Pid} started")]
    private partial void LogChildStarted(int pid);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Process-lane child {Pid} died: {Exit}")]
    private partial void LogChildDied(int pid, string exit);

    [LoggerMessage(Level = LogLevel.Information, Message = "Process-lane child {Pid} retired after {Tasks} tasks: {Reason}")]
    private partial void LogRecycled(int pid, int tasks, string reason);

    /// <summary>One child process and its pipes.</summary>
    private sealed class Child(Process process)
    {
        public Process Process { get; } = process;

        public int Pid { get; } = process.Id;

        public Stream Input { get; } = process.StandardInput.BaseStream;

        public Stream Output { get; } = process.StandardOutput.BaseStream;

        public int Tasks { get; set; }

        public bool Dead { get; set; }
    }
}

/// <summary>What a process-lane child reported about the task it ran, beside the output.</summary>
public sealed class ChildTiming
{
    /// <summary>The child's CPU milliseconds while it ran the task (all its threads).</summary>
    public double? CpuMs { get; set; }
}
