using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// Thousands of random and malformed bodies thrown at the submission routes: none may answer 5xx, and the API serves
/// a good request afterwards. The cases come from one seeded generator, so a failure names its seed and case number
/// and replays with <c>FLEET_FUZZ_SEED</c> (and more cases with <c>FLEET_FUZZ_CASES</c>). Bodies that happen to be
/// valid create tasks, which the fixture's worker runs.
/// </summary>
public sealed class ApiFuzzTests(FleetFixture fleet) : ApiTest(fleet)
{
    private static readonly string[] Types = ["noop", "sha256", "sieve", "sleep", "heat", "http-get", "nope", "", "NOOP"];
    private static readonly string[] Fields = ["type", "payload", "priority", "timeoutSeconds", "maxAttempts", "queue", "tasks", "x"];

    [Fact]
    public async Task RandomAndMalformedBodies_NeverGetA5xx_AndTheApiServesOn()
    {
        var seed = Fuzz.Seed;
        var cases = Fuzz.Cases(3000);
        var random = new Random(seed);
        var failures = new List<string>();
        var statuses = new Dictionary<int, int>();

        for (var i = 0; i < cases && failures.Count < 10; i++)
        {
            var path = random.Next(3) == 0 ? "tasks/batch" : "tasks";
            var body = Body(random, path);
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = random.Next(10) switch
            {
                0 => null,
                1 => new MediaTypeHeaderValue("text/plain"),
                _ => new MediaTypeHeaderValue("application/json"),
            };
            if (random.Next(8) == 0)
            {
                request.Headers.TryAddWithoutValidation("Idempotency-Key", RandomAscii(random, random.Next(0, 300)));
            }

            using var response = await Http.SendAsync(request);
            var status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            if (status >= 500)
            {
                var text = await response.Content.ReadAsStringAsync();
                failures.Add($"seed {seed} case {i}: POST /{path} answered {status} {text[..Math.Min(300, text.Length)]} to {Preview(body)}");
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(statuses.Keys.Any(k => k is 400), "the generator produced no invalid body at all");
        Assert.True(statuses.Keys.Any(k => k is 202), "the generator produced no valid body at all");
        await SubmitAsync("noop", "{}");
    }

    /// <summary>One case: random bytes, a random JSON document, or a task body with a few bytes broken.</summary>
    private static byte[] Body(Random random, string path) => random.Next(6) switch
    {
        0 => Fuzz.RandomBytes(random, random.Next(0, 600)),
        1 => Encoding.UTF8.GetBytes(RandomJson(random, random.Next(1, 90))),
        2 => Fuzz.Mutate(random, Encoding.UTF8.GetBytes(TaskBody(random, path))),
        _ => Encoding.UTF8.GetBytes(TaskBody(random, path)),
    };

    /// <summary>A body shaped like a submission, with random field values: many valid, many not.</summary>
    private static string TaskBody(Random random, string path)
    {
        if (path == "tasks/batch")
        {
            var count = random.Next(0, 6);
            return $"{{\"tasks\": [{string.Join(",", Enumerable.Range(0, count).Select(_ => OneTask(random)))}]}}";
        }

        return OneTask(random);
    }

    private static string OneTask(Random random)
    {
        var fields = new List<string> { $"\"type\": {Quote(Types[random.Next(Types.Length)])}" };
        if (random.Next(2) == 0)
        {
            fields.Add($"\"payload\": {(random.Next(4) == 0 ? RandomJson(random, random.Next(1, 6)) : "{\"size_kb\": 1, \"limit\": 10, \"ms\": 1, \"n\": 16, \"steps\": 1}")}");
        }

        foreach (var field in Fields.Where(_ => random.Next(5) == 0))
        {
            fields.Add($"{Quote(field)}: {RandomScalar(random)}");
        }

        return $"{{{string.Join(", ", fields.OrderBy(_ => random.Next()))}}}";
    }

    private static string RandomJson(Random random, int depth)
    {
        if (depth <= 0 || random.Next(4) == 0)
        {
            return RandomScalar(random);
        }

        return random.Next(2) == 0
            ? $"[{string.Join(",", Enumerable.Range(0, random.Next(0, 3)).Select(_ => RandomJson(random, depth - 1)))}{(random.Next(3) == 0 ? "" : "")}]"
            : $"{{{string.Join(",", Enumerable.Range(0, random.Next(0, 3)).Select(_ => $"{RandomString(random)}: {RandomJson(random, depth - 1)}"))}}}";
    }

    private static string RandomScalar(Random random) => random.Next(9) switch
    {
        0 => "null",
        1 => random.Next(2) == 0 ? "true" : "false",
        2 => random.Next(int.MinValue, int.MaxValue).ToString(CultureInfo.InvariantCulture),
        3 => "1e400",
        4 => "-0.0000000001",
        5 => "12345678901234567890123",
        _ => RandomString(random),
    };

    /// <summary>A JSON string with the escapes real systems send: NUL, lone and paired surrogates, control characters.</summary>
    private static string RandomString(Random random)
    {
        var text = new StringBuilder("\"");
        for (var i = random.Next(0, 12); i > 0; i--)
        {
            text.Append(random.Next(10) switch
            {
                0 => "\\u0000",
                1 => "\\ud800",
                2 => "\\udfff",
                3 => "\\ud83d\\ude00",
                4 => "\\n\\t\\\"\\\\",
                5 => "é漢",
                _ => ((char)random.Next('a', 'z' + 1)).ToString(),
            });
        }

        return text.Append('"').ToString();
    }



    private static string RandomAscii(Random random, int length) =>
        new([.. Enumerable.Range(0, length).Select(_ => (char)random.Next(0x20, 0x7F))]);

    private static string Quote(string text) => $"\"{text}\"";

    private static string Preview(byte[] body) =>
        body.Length <= 200 ? Convert.ToBase64String(body) : Convert.ToBase64String(body, 0, 200) + "...";
}
