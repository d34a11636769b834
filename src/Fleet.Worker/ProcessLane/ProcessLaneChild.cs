using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Fleet.Tasks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Fleet.Worker.ProcessLane;

/// <summary>
/// A process-lane child: the worker's own program started again with <see cref="ChildVariable"/> set. It registers
/// the same task handlers as its worker (built-in, fault-injection when configured, and the host's own), then runs
/// one task at a time as <see cref="ChildProtocol"/> frames arrive on its standard input, and writes each outcome to
/// its standard output. It knows nothing of RabbitMQ or PostgreSQL: the worker keeps the message, the claim, the
/// result write and the acknowledgement. It exits when its input ends (the worker closed it, or died, even by
/// SIGKILL) or when its parent process is gone, so no child outlives its worker.
/// </summary>
public static partial class ProcessLaneChild
{
    /// <summary>Set to 1 in a child's environment: the program runs as a process-lane child instead of a worker.</summary>
    public const string ChildVariable = "FLEET_PROCESS_LANE_CHILD";

    /// <summary>The worker's pid, in a child's environment: the child exits when its parent is no longer that process.</summary>
    public const string ParentVariable = "FLEET_PROCESS_LANE_PARENT";

    /// <summary>Whether this process was started as a process-lane child.</summary>
    public static bool IsChild => Environment.GetEnvironmentVariable(ChildVariable) == "1";

    /// <summary>
    /// Runs this process as a process-lane child until its input ends. <paramref name="configureTasks"/> must register
    /// the same handlers as the worker's <c>AddFleetWorker(configureTasks)</c>, so that every type the worker sends
    /// here is known. A host with handlers of its own calls this first thing in <c>Main</c>:
    /// <code>if (ProcessLaneChild.IsChild) return await ProcessLaneChild.RunAsync(args, services => services.AddTaskHandler&lt;MyHandler&gt;());</code>
    /// </summary>
    public static async Task<int> RunAsync(string[] args, Action<IServiceCollection>? configureTasks = null)
    {
        // The protocol owns standard input and output: what a handler prints goes to standard error, which the child
        // shares with its worker (the worker's log), and nothing a handler reads can swallow a frame.
        var input = Console.OpenStandardInput();
        var output = Console.OpenStandardOutput();
        Console.SetOut(Console.Error);
        Console.SetIn(TextReader.Null);

        var environment = Environment.GetEnvironmentVariable("DOTNET_ENVIRONMENT") ?? Environment.GetEnvironmentVariable("ASPNETCORE_ENVIRONMENT") ?? "Production";
        var configuration = new ConfigurationBuilder()
            .SetBasePath(AppContext.BaseDirectory)
            .AddJsonFile("appsettings.json", optional: true, reloadOnChange: false)
            .AddJsonFile($"appsettings.{environment}.json", optional: true, reloadOnChange: false)
            .AddEnvironmentVariables()
            .AddCommandLine(args)
            .Build();
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(configuration);
        services.AddLogging(logging => logging
            .AddConfiguration(configuration.GetSection("Logging"))
            .AddSimpleConsole(o => o.SingleLine = true)
            .AddFilter(null, LogLevel.Warning));
        services.AddWorkerTasks(configuration, configureTasks);
        await using var provider = services.BuildServiceProvider();
        var registry = provider.GetRequiredService<TaskHandlerRegistry>();
        var logger = provider.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(ProcessLaneChild));

        var parent = int.TryParse(Environment.GetEnvironmentVariable(ParentVariable), NumberStyles.None, CultureInfo.InvariantCulture, out var p) ? p : 0;
        using var parentWatch = new Timer(_ => ExitIfOrphaned(parent), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        ExitIfOrphaned(parent);

        await ChildProtocol.WriteAsync(output, new ChildReply(ChildReply.Ready) { Pid = Environment.ProcessId }, CancellationToken.None).ConfigureAwait(false);
        var loop = new ChildLoop(registry, output, logger);
        await loop.RunAsync(input).ConfigureAwait(false);
        return 0;
    }

    /// <summary>A child whose worker died is re-parented (to init or a subreaper): it leaves at once.</summary>
    private static void ExitIfOrphaned(int parent)
    {
        if (parent != 0 && OperatingSystem.IsLinux() && ParentPid() is { } now && now != parent)
        {
            Environment.Exit(0);
        }
    }

    /// <summary>The parent pid from /proc/self/stat (the fourth field, after the parenthesised command name).</summary>
    private static int? ParentPid()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return int.Parse(fields[1], CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or FormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>One task at a time from the input; a cancel frame cancels the task that runs.</summary>
    private sealed partial class ChildLoop(TaskHandlerRegistry registry, Stream output, ILogger logger)
    {
        private readonly Lock _gate = new();

        // Progress frames are written beside the outcome frames, from another flow: one frame at a time on the pipe.
        private readonly SemaphoreSlim _writing = new(1, 1);
        private readonly ChildProgress _progress = new();
        private CancellationTokenSource? _running;
        private Guid _runningId;

        /// <summary>
        /// Reads frames until the input ends. A run starts on the thread pool, so that this loop keeps reading while it
        /// runs: a cancel frame must reach a handler that is still running. The worker sends the next run only after
        /// the outcome of the last one.
        /// </summary>
        public async Task RunAsync(Stream input)
        {
            var current = Task.CompletedTask;
            _ = SendProgressAsync();
            while (await ChildProtocol.ReadAsync<ChildRequest>(input, CancellationToken.None).ConfigureAwait(false) is { } request)
            {
                if (request.Op == ChildRequest.Run)
                {
                    await current.ConfigureAwait(false);

                    // The task is the running one before it starts, so that a cancel read right after this frame finds it.
                    var cancel = new CancellationTokenSource();
                    lock (_gate)
                    {
                        _running = cancel;
                        _runningId = request.TaskId;
                    }

                    current = Task.Run(() => ExecuteAsync(request, cancel));
                }
                else if (request.Op == ChildRequest.Cancel)
                {
                    lock (_gate)
                    {
                        if (_runningId == request.TaskId)
                        {
                            _running?.Cancel();
                        }
                    }
                }
            }

            // The worker closed the input (recycling this child, or stopping) or died: nobody wants the outcome of a
            // task still running here, and a handler that ignores its token must not keep this process alive.
            if (!current.IsCompleted)
            {
                Environment.Exit(0);
            }
        }

        private async Task ExecuteAsync(ChildRequest request, CancellationTokenSource cancel)
        {
            ChildReply reply;
            try
            {
                reply = await RunTaskAsync(request, cancel.Token).ConfigureAwait(false);
            }
            finally
            {
                lock (_gate)
                {
                    _running = null;
                    _runningId = Guid.Empty;
                }

                cancel.Dispose();
            }

            // A report not sent yet is dropped: the outcome ends the task. One taken by the sender just now may still
            // follow the outcome on the pipe; the worker drops a progress frame of a task it no longer runs.
            _progress.Drop(request.TaskId);
            await WriteAsync(reply).ConfigureAwait(false);
        }

        private async Task WriteAsync(ChildReply reply)
        {
            await _writing.WaitAsync().ConfigureAwait(false);
            try
            {
                await ChildProtocol.WriteAsync(output, reply, CancellationToken.None).ConfigureAwait(false);
            }
            finally
            {
                _writing.Release();
            }
        }

        /// <summary>
        /// Sends the running task's latest report every <see cref="ChildProtocol.ProgressInterval"/>, when there is a
        /// new one: a handler that reports in a tight loop costs the pipe a few frames a second. Ends with the pipe.
        /// </summary>
        private async Task SendProgressAsync()
        {
            using var timer = new PeriodicTimer(ChildProtocol.ProgressInterval);
            try
            {
                while (await timer.WaitForNextTickAsync().ConfigureAwait(false))
                {
                    if (_progress.Take() is { } report)
                    {
                        await WriteAsync(report).ConfigureAwait(false);
                    }
                }
            }
            catch (IOException)
            {
                // The worker is gone or closed the pipe: the input loop ends this process.
            }
        }

        private async Task<ChildReply> RunTaskAsync(ChildRequest request, CancellationToken cancellationToken)
        {
            var wall = Stopwatch.StartNew();
            var cpuStart = Environment.CpuUsage.TotalTime;
            ChildReply Done(bool ok) => new(ChildReply.Done)
            {
                TaskId = request.TaskId,
                Ok = ok,
                WallMs = wall.Elapsed.TotalMilliseconds,
                CpuMs = (Environment.CpuUsage.TotalTime - cpuStart).TotalMilliseconds,
            };

            if (request.Type is null || !registry.TryGet(request.Type, out var handler))
            {
                return Done(false) with { ErrorType = "UnknownTaskType", ErrorMessage = $"The process-lane child has no handler for task type '{request.Type}'. Known types: {string.Join(", ", registry.Types)}." };
            }

            try
            {
                var prepared = handler.Prepare(request.Payload ?? default);
                var context = new TaskContext(request.TaskId, request.Type, request.Attempt ?? 1, request.BatchId, request.AfterTaskId, request.AfterBatchId, _progress);
                using var scope = TaskContext.Enter(context);
                var pending = prepared(cancellationToken);
                var output = pending.IsCompletedSuccessfully ? pending.Result : await pending.ConfigureAwait(false);
                return Done(true) with { Output = output };
            }
            catch (TaskValidationException ex)
            {
                return Done(false) with { ErrorType = "ValidationError", ErrorMessage = ex.Message, Validation = true };
            }
            catch (TaskRefusedException ex)
            {
                return Done(false) with { ErrorType = ex.ErrorType, ErrorMessage = ex.Message, Refused = true };
            }
            catch (Exception ex) when (cancellationToken.IsCancellationRequested)
            {
                return Done(false) with { ErrorType = ex.GetType().FullName, ErrorMessage = ex.Message, Cancelled = true };
            }
#pragma warning disable CA1031 // A handler's failure, of any type, is the task's outcome, sent to the worker.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogHandlerFailed(logger, request.TaskId, ex.GetType().FullName);
                return Done(false) with { ErrorType = ex.GetType().FullName ?? ex.GetType().Name, ErrorMessage = ex.Message };
            }
        }

        [LoggerMessage(Level = LogLevel.Debug, Message = "Task {TaskId} failed in the process-lane child with {ErrorType}")]
        private static partial void LogHandlerFailed(ILogger logger, Guid taskId, string? errorType);
    }

    /// <summary>A child's progress sink: the latest report of the task it runs, until the sender takes it.</summary>
    private sealed class ChildProgress : ITaskProgressSink
    {
        private readonly Lock _gate = new();
        private ChildReply? _latest;

        public void Report(Guid taskId, double fraction, string? note)
        {
            // NaN says nothing, and JSON has no NaN or infinity: clamped here, as the worker would.
            if (double.IsNaN(fraction))
            {
                return;
            }

            var report = new ChildReply(ChildReply.Progress) { TaskId = taskId, Fraction = Math.Clamp(fraction, 0, 1), Note = note };
            lock (_gate)
            {
                _latest = report;
            }
        }

        public ChildReply? Take()
        {
            lock (_gate)
            {
                var latest = _latest;
                _latest = null;
                return latest;
            }
        }

        public void Drop(Guid taskId)
        {
            lock (_gate)
            {
                if (_latest?.TaskId == taskId)
                {
                    _latest = null;
                }
            }
        }
    }
}
