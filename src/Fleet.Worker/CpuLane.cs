using System.Collections.Concurrent;
using System.Text.Json;
using Fleet.Tasks;
using Microsoft.Extensions.Options;

namespace Fleet.Worker;

/// <summary>
/// The CPU lane: a fixed set of dedicated threads that run CPU-bound handlers. Keeping this work off the thread
/// pool means the message pump, heartbeats, database writes and I/O-lane handlers always find a free pool thread,
/// however busy the cores are; the number of threads bounds how many CPU tasks run at once.
/// </summary>
public sealed class CpuLane : IDisposable
{
    private readonly BlockingCollection<WorkItem> _queue = [];
    private readonly Thread[] _threads;

    public CpuLane(IOptions<WorkerOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Concurrency = options.Value.CpuConcurrency;
        _threads = new Thread[Concurrency];
        for (var i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = $"fleet-cpu-{i}" };
            _threads[i].Start();
        }
    }

    public int Concurrency { get; }

    /// <summary>Runs <paramref name="task"/> on a lane thread; returns its output and the CPU milliseconds it used.</summary>
    public Task<(JsonElement Output, double? CpuMs)> RunAsync(PreparedTask task, CancellationToken cancellationToken)
    {
        var item = new WorkItem(task, cancellationToken);
        _queue.Add(item, CancellationToken.None);
        return item.Completion.Task;
    }

    private void Run()
    {
        foreach (var item in _queue.GetConsumingEnumerable())
        {
            item.Execute();
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        foreach (var thread in _threads)
        {
            thread.Join(TimeSpan.FromSeconds(5));
        }

        _queue.Dispose();
    }

    private sealed class WorkItem(PreparedTask task, CancellationToken cancellationToken)
    {
        public TaskCompletionSource<(JsonElement, double?)> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Execute()
        {
            if (cancellationToken.IsCancellationRequested)
            {
                Completion.TrySetCanceled(cancellationToken);
                return;
            }

            var cpuStart = ThreadCpuTime.NowMilliseconds();
            try
            {
                var pending = task(cancellationToken);

                // CPU handlers complete synchronously; one that awaits still holds this thread, as a CPU task should.
                var output = pending.IsCompletedSuccessfully ? pending.Result : pending.AsTask().GetAwaiter().GetResult();
                Completion.TrySetResult((output, ThreadCpuTime.NowMilliseconds() - cpuStart));
            }
            catch (OperationCanceledException ex)
            {
                Completion.TrySetCanceled(ex.CancellationToken);
            }
#pragma warning disable CA1031 // A handler's failure, of any type, is the task's result, not the lane's.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Completion.TrySetException(ex);
            }
        }
    }
}
