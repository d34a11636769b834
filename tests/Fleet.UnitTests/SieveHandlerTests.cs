using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;

namespace Fleet.UnitTests;

public sealed class SieveHandlerTests
{
    private readonly ITaskHandler _handler = new SieveHandler();

    [Theory]
    [InlineData(2, 0)]
    [InlineData(3, 1)]
    [InlineData(10, 4)]
    [InlineData(11, 4)]
    [InlineData(12, 5)]
    [InlineData(100, 25)]
    [InlineData(2_000_000, 148_933)]
    public async Task Sieve_CountsPrimesBelowLimit(int limit, int expected)
    {
        var output = await HandlerRunner.RunAsync(_handler, $$"""{"limit":{{limit}}}""");

        Assert.Equal(expected, output.GetProperty("count").GetInt32());
        Assert.Single(output.EnumerateObject());
    }

    [Fact]
    public async Task Sieve_Throws_WhenCancelled()
    {
        var prepared = _handler.Prepare(HandlerRunner.Payload("""{"limit":2000000}"""));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await prepared(new CancellationToken(canceled: true)));
    }

    [Fact]
    public void Sieve_RunsInCpuLane() => Assert.Equal(TaskLane.Cpu, _handler.Lane);
}
