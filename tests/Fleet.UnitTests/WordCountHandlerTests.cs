using Fleet.Samples.CustomTasks;
using Fleet.Tasks;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.UnitTests;

public sealed class WordCountHandlerTests
{
    [Theory]
    [InlineData("", 0)]
    [InlineData("   ", 0)]
    [InlineData("one", 1)]
    [InlineData("the quick brown fox", 4)]
    [InlineData("  leading and trailing  ", 3)]
    [InlineData("tabs\tand\nnew\r\nlines", 4)]
    public async Task WordCount_CountsWhitespaceSeparatedWords(string text, int expected)
    {
        var handler = new WordCountHandler();
        var payload = System.Text.Json.JsonSerializer.Serialize(new { text });

        var output = await HandlerRunner.RunAsync(handler, payload);

        Assert.Equal(expected, output.GetProperty("words").GetInt32());
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"text":42}""")]
    [InlineData("""{"text":null}""")]
    public void WordCount_RejectsMissingOrNonStringText(string payload)
    {
        var error = HandlerRunner.Reject(new WordCountHandler(), payload);

        Assert.Contains("text", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddCustomTasks_MakesWordCountAvailableNextToBuiltIns()
    {
        var services = new ServiceCollection();
        services.AddFleetTasks();
        services.AddCustomTasks();
        using var provider = services.BuildServiceProvider();
        var registry = provider.GetRequiredService<TaskHandlerRegistry>();

        Assert.True(registry.TryGet("word-count", out var handler));
        var output = await HandlerRunner.RunAsync(handler, """{"text":"hello fleet"}""");

        Assert.Equal(TaskLane.Cpu, handler.Lane);
        Assert.Equal(2, output.GetProperty("words").GetInt32());
    }
}
