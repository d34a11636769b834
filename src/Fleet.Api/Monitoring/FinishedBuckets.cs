using Fleet.Api.Models;
using Npgsql;

namespace Fleet.Api.Monitoring;

/// <summary>
/// Final tasks counted per 5-second bucket (of <c>finished_at</c>) and status over the last 24 hours, held in
/// memory. Counting a window with SQL on every poll reads every row finished in it (the index gives the time, the
/// heap the status): 130,000 rows of the last hour took 0.6 s, a busy day seconds. Here a refresh recounts only the
/// last <c>Api:StatsRecountSeconds</c> (rows that commit a little after their <c>finished_at</c> land there), and the
/// whole day is recounted every <c>Api:StatsResyncMinutes</c> and at the first request. Final states never change,
/// so a bucket older than the recount window stays right, except for a row committed later than that after it
/// finished, which the next full recount picks up. Not thread-safe: <see cref="StatsService"/> serialises refreshes.
/// </summary>
internal sealed class FinishedBuckets
{
    public const int BucketSeconds = 5;
    public const long BucketsPerDay = 24 * 3600 / BucketSeconds;

    // Range of ix_tasks_finished, then the status from the heap; grouped so that one row comes back per bucket and state.
    private const string CountSql = """
        SELECT floor(extract(epoch FROM finished_at) / 5)::bigint, status, count(*)
        FROM fleet.tasks
        WHERE finished_at >= @from AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled')
        GROUP BY 1, 2
        """;

    private readonly SortedDictionary<long, long[]> _buckets = [];
    private DateTimeOffset? _lastFullCount;

    public static long BucketOf(DateTimeOffset time) => (long)Math.Floor(time.ToUnixTimeMilliseconds() / 1000.0 / BucketSeconds);

    public static DateTimeOffset StartOf(long bucket) => DateTimeOffset.FromUnixTimeSeconds(bucket * BucketSeconds);

    public async Task RefreshAsync(NpgsqlConnection connection, DateTimeOffset now, TimeSpan recount, TimeSpan resync, CancellationToken cancellationToken)
    {
        var nowBucket = BucketOf(now);
        var windowStart = nowBucket - BucketsPerDay;
        var full = _lastFullCount is null || now - _lastFullCount.Value >= resync;
        var from = full ? windowStart : Math.Max(windowStart, nowBucket - (long)Math.Ceiling(recount.TotalSeconds / BucketSeconds));

        await using var command = new NpgsqlCommand(CountSql, connection);
        command.Parameters.AddWithValue("from", StartOf(from));
        var fresh = new Dictionary<long, long[]>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var bucket = reader.GetInt64(0);
                if (!fresh.TryGetValue(bucket, out var counts))
                {
                    fresh[bucket] = counts = new long[4];
                }

                counts[StatusIndex(reader.GetString(1))] += reader.GetInt64(2);
            }
        }

        // Everything from "from" on is replaced by the recount; older buckets leave the day window.
        foreach (var stale in _buckets.Keys.Where(b => b >= from || b < windowStart).ToList())
        {
            _buckets.Remove(stale);
        }

        foreach (var (bucket, counts) in fresh)
        {
            _buckets[bucket] = counts;
        }

        if (full)
        {
            _lastFullCount = now;
        }
    }

    /// <summary>Final tasks by state in buckets <paramref name="from"/> to <paramref name="to"/>, both included.</summary>
    public FinalCounts Sum(long from, long to)
    {
        var sums = new long[4];
        foreach (var (_, counts) in _buckets.Where(b => b.Key >= from && b.Key <= to))
        {
            for (var i = 0; i < 4; i++)
            {
                sums[i] += counts[i];
            }
        }

        return new FinalCounts(sums[0], sums[1], sums[2], sums[3]);
    }

    /// <summary>Final tasks of any state in one bucket.</summary>
    public long Total(long bucket) => _buckets.TryGetValue(bucket, out var counts) ? counts.Sum() : 0;

    private static int StatusIndex(string status) => status switch
    {
        "succeeded" => 0,
        "failed" => 1,
        "timed_out" => 2,
        _ => 3,
    };
}
