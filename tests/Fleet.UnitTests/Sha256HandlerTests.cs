using System.Security.Cryptography;
using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;

namespace Fleet.UnitTests;

public sealed class Sha256HandlerTests
{
    private readonly ITaskHandler _handler = new Sha256Handler();

    [Theory]
    [InlineData(0, "1371ec7492f973e17aa9165d10539ad9c3a4700c6fe5488f36e0df07370ebfe9")]
    [InlineData(7, "1031ff50e74edab1206d326f41a90b9132aed13d5e613a77aaac89d57a379128")]
    public async Task Sha256_MatchesReferenceDigest(int seed, string expected)
    {
        var output = await HandlerRunner.RunAsync(_handler, $$"""{"size_kb":1024,"rounds":32,"seed":{{seed}}}""");

        Assert.Equal(expected, output.GetProperty("digest").GetString());
        Assert.Single(output.EnumerateObject());
    }

    [Theory]
    [InlineData(1, 1, 0)]
    [InlineData(3, 2, -5)]
    [InlineData(2, 3, int.MaxValue)]
    public async Task Sha256_MatchesStraightforwardImplementation_ForSmallInputsAndExtremeSeeds(int sizeKb, int rounds, int seed)
    {
        var data = new byte[sizeKb * 1024];
        for (long i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(((i * 31) + seed) & 0xFF);
        }

        var digest = Array.Empty<byte>();
        for (var r = 0; r < rounds; r++)
        {
            digest = SHA256.HashData([.. digest, .. data]);
        }

        var output = await HandlerRunner.RunAsync(_handler, $$"""{"size_kb":{{sizeKb}},"rounds":{{rounds}},"seed":{{seed}}}""");

        Assert.Equal(Convert.ToHexStringLower(digest), output.GetProperty("digest").GetString());
    }

    [Fact]
    public async Task Sha256_Throws_WhenCancelled()
    {
        var prepared = _handler.Prepare(HandlerRunner.Payload("""{"size_kb":1,"rounds":1,"seed":0}"""));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await prepared(new CancellationToken(canceled: true)));
    }

    [Fact]
    public void Sha256_RunsInCpuLane() => Assert.Equal(TaskLane.Cpu, _handler.Lane);
}
