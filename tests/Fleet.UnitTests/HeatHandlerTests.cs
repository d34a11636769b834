using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;

namespace Fleet.UnitTests;

public sealed class HeatHandlerTests
{
    private readonly ITaskHandler _handler = new HeatHandler();

    [Theory]
    [InlineData(32, 50, 0, 0.32640884227560912, 0.5090895074556907)]
    [InlineData(32, 50, 7, 0.32615876684385936, 0.51067139924105542)]
    [InlineData(256, 1000, 0, 0.4116977725986532, 0.49960706784880227)]
    [InlineData(256, 1000, 7, 0.41170440981450385, 0.49960706784880221)]
    public async Task Heat_MatchesReferenceVector(int n, int steps, int seed, double expectedMean, double expectedMax)
    {
        var output = await HandlerRunner.RunAsync(_handler, $$"""{"n":{{n}},"steps":{{steps}},"seed":{{seed}}}""");

        AssertRelativelyClose(expectedMean, output.GetProperty("mean").GetDouble());
        AssertRelativelyClose(expectedMax, output.GetProperty("max").GetDouble());
        Assert.Equal(2, output.EnumerateObject().Count());
    }

    [Theory]
    [InlineData(3, 5, 0)]
    [InlineData(7, 4, -3)]
    [InlineData(13, 9, int.MinValue)]
    [InlineData(37, 20, int.MaxValue)]
    public async Task Heat_MatchesScalarReference_ForOddSizesAndExtremeSeeds(int n, int steps, int seed)
    {
        var (mean, max) = ScalarReference(n, steps, seed);

        var output = await HandlerRunner.RunAsync(_handler, $$"""{"n":{{n}},"steps":{{steps}},"seed":{{seed}}}""");

        Assert.Equal(mean, output.GetProperty("mean").GetDouble());
        Assert.Equal(max, output.GetProperty("max").GetDouble());
    }

    [Fact]
    public async Task Heat_WithZeroSteps_ReportsInitialGrid()
    {
        var (mean, max) = ScalarReference(16, 0, 1);

        var output = await HandlerRunner.RunAsync(_handler, """{"n":16,"steps":0,"seed":1}""");

        Assert.Equal(mean, output.GetProperty("mean").GetDouble());
        Assert.Equal(max, output.GetProperty("max").GetDouble());
    }

    [Fact]
    public async Task Heat_Throws_WhenCancelled()
    {
        var prepared = _handler.Prepare(HandlerRunner.Payload("""{"n":256,"steps":1000,"seed":0}"""));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await prepared(new CancellationToken(canceled: true)));
    }

    [Fact]
    public void Heat_RunsInCpuLane() => Assert.Equal(TaskLane.Cpu, _handler.Lane);

    private static void AssertRelativelyClose(double expected, double actual)
    {
        var relative = Math.Abs(actual - expected) / Math.Abs(expected);
        Assert.True(relative <= 1e-12, $"expected {expected:R}, got {actual:R} (relative error {relative:E2})");
    }

    /// <summary>The definition in docs/task-types.md transcribed literally with 2D arrays and Python's non-negative modulo.</summary>
    private static (double Mean, double Max) ScalarReference(int n, int steps, int seed)
    {
        var u = new double[n, n];
        var v = new double[n, n];
        for (var i = 1; i <= n - 2; i++)
        {
            for (var j = 1; j <= n - 2; j++)
            {
                var m = ((((long)i * 131) + ((long)j * 71) + ((long)seed * 17)) % 1000 + 1000) % 1000;
                u[i, j] = m / 1000.0;
            }
        }

        for (var s = 0; s < steps; s++)
        {
            for (var i = 1; i <= n - 2; i++)
            {
                for (var j = 1; j <= n - 2; j++)
                {
                    var c = u[i, j];
                    v[i, j] = c + (0.1 * ((((u[i - 1, j] + u[i + 1, j]) + u[i, j - 1]) + u[i, j + 1]) - (4.0 * c)));
                }
            }

            (u, v) = (v, u);
        }

        var sum = 0.0;
        var max = double.NegativeInfinity;
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
            {
                sum += u[i, j];
                max = Math.Max(max, u[i, j]);
            }
        }

        return (sum / (n * n), max);
    }
}
