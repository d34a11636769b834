using System.Text.Json.Serialization;
using Fleet.Tasks;

namespace Fleet.Samples.CustomTasks;

/// <summary>
/// <c>word-count</c>: counts the words (maximal runs of non-whitespace characters) in <c>text</c>.
/// Input <c>{"text": "..."}</c>, output <c>{"words": n}</c>.
/// </summary>
/// <remarks>
/// Counting is CPU work, so the handler derives from <see cref="CpuTaskHandler{TInput, TOutput}"/> and runs in the
/// worker's CPU lane. A handler that waits on I/O derives from <see cref="TaskHandler{TInput, TOutput}"/> instead,
/// returns <see cref="TaskLane.Io"/> from <c>Lane</c> and overrides <c>ExecuteAsync</c>.
/// Handlers are singletons shared by all tasks: keep them stateless (or thread-safe).
/// </remarks>
public sealed class WordCountHandler : CpuTaskHandler<WordCountInput, WordCountOutput>
{
    /// <summary>The type name that tasks use: lowercase, stable, unique within a worker.</summary>
    public const string TypeName = "word-count";

    /// <summary>The longest accepted text, in characters.</summary>
    public const int MaxTextLength = 10_000_000;

    public override string Type => TypeName;

    // Runs in Prepare, before the task takes a lane slot: reject bad input here with a clear message.
    protected override void Validate(WordCountInput input) =>
        TaskValidationException.ThrowIfOutOfRange(input.Text.Length, 0, MaxTextLength, "text.length");

    protected override WordCountOutput Execute(WordCountInput input, CancellationToken cancellationToken)
    {
        var words = 0;
        var inWord = false;
        var text = input.Text.AsSpan();
        for (var i = 0; i < text.Length; i++)
        {
            // Long texts: check the token now and then, never in every iteration.
            if ((i & 0xFFFF) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            var isSpace = char.IsWhiteSpace(text[i]);
            if (!isSpace && !inWord)
            {
                words++;
            }

            inWord = !isSpace;
        }

        return new WordCountOutput { Words = words };
    }
}

/// <summary>Input of <c>word-count</c>. <c>required</c> makes a payload without <c>text</c> a validation error.</summary>
public sealed record WordCountInput
{
    [JsonPropertyName("text")]
    public required string Text { get; init; }
}

/// <summary>Output of <c>word-count</c>.</summary>
public sealed record WordCountOutput
{
    [JsonPropertyName("words")]
    public required int Words { get; init; }
}
