namespace Fleet.Worker.MessagePath;

/// <summary>
/// How long a failed task waits before its next attempt: <c>Worker:RetryBaseSeconds</c> x 2^(n-2) for attempt n,
/// capped at <c>Worker:RetryMaxSeconds</c>, with +-20% jitter so that tasks that failed together (a dependency that
/// was down) do not all come back at the same moment. The wait itself is the due relay's: the worker commits the
/// task <c>queued</c> with <c>not_before</c> = its finish + this backoff, and the relay publishes it at that time.
/// </summary>
internal static class RetryBackoff
{
    /// <summary>The backoff before attempt <paramref name="nextAttempt"/> (2 for the first retry).</summary>
    public static TimeSpan Before(int nextAttempt, double baseSeconds, double maxSeconds)
    {
        var exponential = baseSeconds * Math.Pow(2, Math.Max(0, nextAttempt - 2));
        var jitter = 0.8 + (Random.Shared.NextDouble() * 0.4);
        return TimeSpan.FromSeconds(Math.Min(exponential, maxSeconds) * jitter);
    }
}
