using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json.Serialization;

namespace Fleet.Tasks.BuiltIn;

/// <summary>
/// <c>sha256</c> (docs/task-types.md): builds <c>size_kb</c> KiB of data where byte <c>i</c> is
/// <c>(i*31 + seed) &amp; 0xFF</c>, then hashes it <c>rounds</c> times, each round hashing the previous digest
/// (nothing on round 0) followed by the data. Output: <c>{"digest": "&lt;64 lowercase hex&gt;"}</c>.
/// </summary>
public sealed class Sha256Handler : CpuTaskHandler<Sha256Input, Sha256Output>
{
    /// <summary>The type name.</summary>
    public const string TypeName = "sha256";

    /// <summary>Largest accepted <c>size_kb</c>: 64 MiB of data.</summary>
    public const long MaxSizeKb = 65_536;

    /// <summary>Largest accepted <c>rounds</c>.</summary>
    public const long MaxRounds = 10_000;

    public override string Type => TypeName;

    protected override void Validate(Sha256Input input)
    {
        TaskValidationException.ThrowIfOutOfRange(input.SizeKb, 1, MaxSizeKb, "size_kb");
        TaskValidationException.ThrowIfOutOfRange(input.Rounds, 1, MaxRounds, "rounds");
    }

    protected override Sha256Output Execute(Sha256Input input, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var size = checked((int)(input.SizeKb * 1024));
        var rounds = (int)input.Rounds;
        var rented = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            var data = rented.AsSpan(0, size);
            var seed = input.Seed;
            for (var i = 0; i < data.Length; i++)
            {
                // Only the low 8 bits matter, so int wrap-around (large i, negative or large seeds) is harmless.
                data[i] = unchecked((byte)((i * 31) + seed));
            }

            Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            for (var r = 0; r < rounds; r++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (r > 0)
                {
                    hash.AppendData(digest);
                }

                hash.AppendData(data);
                hash.GetHashAndReset(digest);
            }

            return new Sha256Output { Digest = Convert.ToHexStringLower(digest) };
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }
}

/// <summary>Input of <c>sha256</c>: <c>{"size_kb": 1024, "rounds": 32, "seed": 0}</c>.</summary>
public sealed record Sha256Input
{
    [JsonPropertyName("size_kb")]
    public required long SizeKb { get; init; }

    [JsonPropertyName("rounds")]
    public required long Rounds { get; init; }

    [JsonPropertyName("seed")]
    public required int Seed { get; init; }
}

/// <summary>Output of <c>sha256</c>.</summary>
public sealed record Sha256Output
{
    /// <summary>The final digest, 64 lowercase hex digits.</summary>
    [JsonPropertyName("digest")]
    public required string Digest { get; init; }
}
