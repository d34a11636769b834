using Fleet.Api.Models;

namespace Fleet.Api.Monitoring;

/// <summary>
/// Final tasks counted per 5-second bucket (of <c>finished_at</c>) and status over the last 24 hours, held in
/// memory, because counting a window with SQL on every poll reads every row finished in it (the index gives the
/// time, the heap the status; docs/decisions/0102-stats-in-memory-buckets.md). A refresh recounts only the last
/// <c>Api:StatsRecountSeconds</c> (rows that commit a little after their <c>finished_at</c> land there), and the
/// whole day every <c>Api:StatsResyncMinutes</c> and at the first request: <see cref="Plan"/> says from which bucket,
/// <see cref="MonitoringQueries.ReadStatsAsync"/> counts, <see cref="Replace"/> keeps the counts. Final states never
/// change, so a bucket older than the recount window stays right, except for a row committed later than that after
/// it finished, which the next full recount picks up. Not thread-safe: <see cref="StatsService"/> serialises refreshes.
/// </summary>
internal sealed class FinishedBuckets
{
    public const int BucketSeconds = 5;
    public const long BucketsPerDay = 24 * 3600 / BucketSeconds;

    private readonly SortedDictionary<long, long[]> _buckets = [];
    private DateTimeOffset? _lastFullCount;

    public static long BucketOf(DateTimeOffset time) => (long)Math.Floor(time.ToUnixTimeMilliseconds() / 1000.0 / BucketSeconds);

    public static DateTimeOffset StartOf(long bucket) => DateTimeOffset.FromUnixTimeSeconds(bucket * BucketSeconds);

    /// <summary>The first bucket the refresh at <paramref name="now"/> recounts, and whether that is the whole day.</summary>
    public (long From, bool Full) Plan(DateTimeOffset now, TimeSpan recount, TimeSpan resync)
    {
        var nowBucket = BucketOf(now);
        var windowStart = nowBucket - BucketsPerDay;
        var full = _lastFullCount is null || now - _lastFullCount.Value >= resync;
        return (full ? windowStart : Math.Max(windowStart, nowBucket - (long)Math.Ceiling(recount.TotalSeconds / BucketSeconds)), full);
    }

    /// <summary>Replaces the buckets from <paramref name="plan"/>'s on with the recount, and drops those older than a day.</summary>
    public void Replace(DateTimeOffset now, (long From, bool Full) plan, IEnumerable<(long Bucket, string Status, long Count)> recount)
    {
        var fresh = new Dictionary<long, long[]>();
        foreach (var (bucket, status, count) in recount)
        {
            if (!fresh.TryGetValue(bucket, out var counts))
            {
                fresh[bucket] = counts = new long[4];
            }

            counts[StatusIndex(status)] += count;
        }

        var windowStart = BucketOf(now) - BucketsPerDay;
        foreach (var stale in _buckets.Keys.Where(b => b >= plan.From || b < windowStart).ToList())
        {
            _buckets.Remove(stale);
        }

        foreach (var (bucket, counts) in fresh)
        {
            _buckets[bucket] = counts;
        }

        if (plan.Full)
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
