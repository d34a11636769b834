using System.Globalization;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// What the seeded fuzz tests share: the seed and case count (<c>FLEET_FUZZ_SEED</c>, <c>FLEET_FUZZ_CASES</c>, so
/// that a failure is replayed exactly) and the byte-level mutations.
/// </summary>
public static class Fuzz
{
    public const int DefaultSeed = 20261203;

    public static int Seed => Setting("FLEET_FUZZ_SEED", DefaultSeed);

    public static int Cases(int fallback) => Setting("FLEET_FUZZ_CASES", fallback);

    /// <summary>One to three bytes removed, inserted or replaced, none inside <paramref name="keep"/> (when it occurs).</summary>
    public static byte[] Mutate(Random random, byte[] body, byte[]? keep = null)
    {
        var bytes = body.ToList();
        for (var i = random.Next(1, 4); i > 0 && bytes.Count > 0; i--)
        {
            var at = random.Next(bytes.Count);
            var keepAt = keep is { Length: > 0 } ? bytes.ToArray().AsSpan().IndexOf(keep) : -1;
            if (keepAt >= 0 && at >= keepAt && at <= keepAt + keep!.Length)
            {
                continue;
            }

            switch (random.Next(3))
            {
                case 0:
                    bytes.RemoveAt(at);
                    break;
                case 1:
                    bytes.Insert(at, (byte)random.Next(256));
                    break;
                default:
                    bytes[at] = (byte)random.Next(256);
                    break;
            }
        }

        return [.. bytes];
    }

    public static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    private static int Setting(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) ? value : fallback;
}
