using Fleet.Api.Models;
using Fleet.Contracts;
using Fleet.Persistence;
using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Monitoring;

/// <summary>
/// <c>GET /workers</c>: the workers seen within <c>Api:WorkerRecentMinutes</c> (through <c>ix_workers_last_seen</c>),
/// with what each is running now (through the status index: running tasks are few).
/// </summary>
public sealed class WorkerQueries(IDbContextFactory<FleetDbContext> contexts, IOptions<ApiOptions> options)
{
    public async Task<IReadOnlyList<WorkerInfo>> ListAsync(CancellationToken cancellationToken)
    {
        var api = options.Value;
        var recentSeconds = Math.Max(api.WorkerRecentMinutes * 60.0, api.WorkerStaleSeconds);
        var staleSeconds = (double)api.WorkerStaleSeconds;
        await using var db = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);

        // DateTimeOffset.UtcNow becomes the database's now(): "live" is judged on the clock that wrote last_seen_at.
        var workers = await db.Workers.AsNoTracking()
            .Where(w => w.LastSeenAt > DateTimeOffset.UtcNow.AddSeconds(-recentSeconds))
            .OrderBy(w => w.State == WorkerState.Stopped).ThenByDescending(w => w.LastSeenAt)
            .Select(w => new
            {
                Worker = w,
                Live = w.State != WorkerState.Stopped && w.LastSeenAt > DateTimeOffset.UtcNow.AddSeconds(-staleSeconds),
            })
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        var running = await db.Tasks.AsNoTracking()
            .Where(t => t.Status == TaskState.Running && t.WorkerId != null)
            // A task runs on a worker's CPU lane when its queue's lane is cpu: fleet-cpu or a declared cpu queue.
            .GroupBy(t => new { t.WorkerId, Cpu = db.Queues.Any(q => q.Name == t.Queue && q.Lane == Fleet.Client.QueueCatalog.CpuLane) })
            .Select(g => new { g.Key.WorkerId, g.Key.Cpu, Count = g.LongCount() })
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        var runningBy = running.ToLookup(r => (r.WorkerId, r.Cpu), r => r.Count);

        return [.. workers.Select(x => new WorkerInfo(
            x.Worker.Id, x.Worker.Host, x.Worker.Pid, x.Worker.Queues, x.Worker.CpuConcurrency, x.Worker.IoConcurrency,
            x.Worker.State, x.Live, x.Worker.LastSeenAt, x.Worker.TasksSucceeded, x.Worker.TasksFailed, x.Worker.TasksSkipped,
            x.Worker.StartedAt, runningBy[(x.Worker.Id, true)].Sum(), runningBy[(x.Worker.Id, false)].Sum(),
            x.Worker.ProcessSlots, x.Worker.ProcessBusy, x.Worker.ProcessChildrenStarted, x.Worker.ProcessKills, x.Worker.ProcessDeaths))];
    }
}
