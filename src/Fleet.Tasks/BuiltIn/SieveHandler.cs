using System.Buffers;
using System.Text.Json.Serialization;

namespace Fleet.Tasks.BuiltIn;

/// <summary>
/// <c>sieve</c> (docs/task-types.md): a plain sieve of Eratosthenes over <c>[2, limit)</c> with explicit loops;
/// output <c>{"count": number of primes below limit}</c>.
/// </summary>
public sealed class SieveHandler : CpuTaskHandler<SieveInput, SieveOutput>
{
    /// <summary>The type name.</summary>
    public const string TypeName = "sieve";

    /// <summary>Largest accepted <c>limit</c>: the sieve allocates one byte per number.</summary>
    public const long MaxLimit = 200_000_000;

    // Outer-loop iterations between cancellation checks (a power of two, used as a mask).
    private const int CancellationCheckInterval = 4096;

    public override string Type => TypeName;

    protected override void Validate(SieveInput input) =>
        TaskValidationException.ThrowIfOutOfRange(input.Limit, 2, MaxLimit, "limit");

    protected override SieveOutput Execute(SieveInput input, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var limit = (int)input.Limit;

        // A pooled buffer, cleared: the algorithm is unchanged, but a fresh 2 MB array per task is a large-object
        // allocation that makes the garbage collector outweigh the sieve (docs/decisions/0002).
        var composite = ArrayPool<bool>.Shared.Rent(limit);
        try
        {
            Array.Clear(composite, 0, limit);
            return new SieveOutput { Count = Count(composite, limit, cancellationToken) };
        }
        finally
        {
            ArrayPool<bool>.Shared.Return(composite);
        }
    }

    private static int Count(bool[] composite, int limit, CancellationToken cancellationToken)
    {
        var count = 0;
        for (var i = 2; i < limit; i++)
        {
            if ((i & (CancellationCheckInterval - 1)) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            if (!composite[i])
            {
                count++;

                // 64-bit j: i*i overflows int32 for i > 46340.
                for (var j = (long)i * i; j < limit; j += i)
                {
                    composite[j] = true;
                }
            }
        }

        return count;
    }
}

/// <summary>Input of <c>sieve</c>: <c>{"limit": 2000000}</c>.</summary>
public sealed record SieveInput
{
    [JsonPropertyName("limit")]
    public required long Limit { get; init; }
}

/// <summary>Output of <c>sieve</c>.</summary>
public sealed record SieveOutput
{
    /// <summary>The number of primes below <c>limit</c>.</summary>
    [JsonPropertyName("count")]
    public required long Count { get; init; }
}
