using Fleet.Worker.MessagePath;

namespace Fleet.UnitTests;

/// <summary>The backoff a retry's not_before is set with: doubling from the base, capped, within +-20% jitter.</summary>
public sealed class RetryBackoffTests
{
    [Theory]
    [InlineData(2, 1.0)]
    [InlineData(3, 2.0)]
    [InlineData(4, 4.0)]
    [InlineData(12, 300.0)]
    [InlineData(100, 300.0)]
    public void TheBackoff_DoublesPerAttempt_UpToTheCap_WithinItsJitter(int nextAttempt, double expectedSeconds)
    {
        for (var i = 0; i < 200; i++)
        {
            var delay = RetryBackoff.Before(nextAttempt, baseSeconds: 1, maxSeconds: 300).TotalSeconds;
            Assert.InRange(delay, expectedSeconds * 0.8, expectedSeconds * 1.2);
        }
    }

    [Fact]
    public void TheJitter_SpreadsRetriesThatFailedTogether()
    {
        var delays = Enumerable.Range(0, 100).Select(_ => RetryBackoff.Before(2, baseSeconds: 10, maxSeconds: 300)).Distinct().Count();

        Assert.True(delays > 50, $"only {delays} distinct delays of 100");
    }
}
