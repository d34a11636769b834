using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;

namespace Fleet.UnitTests;

public sealed class ValidationTests
{
    public static TheoryData<string, string, string> MalformedPayloads => new()
    {
        // Missing required fields.
        { Sha256Handler.TypeName, """{"size_kb":1024,"seed":0}""", "rounds" },
        { Sha256Handler.TypeName, """{"rounds":32,"seed":0}""", "size_kb" },
        { Sha256Handler.TypeName, """{"size_kb":1024,"rounds":32}""", "seed" },
        { SieveHandler.TypeName, "{}", "limit" },
        { HeatHandler.TypeName, """{"n":32,"steps":50}""", "seed" },
        { HeatHandler.TypeName, """{"steps":50,"seed":0}""", "n" },
        { SleepHandler.TypeName, "{}", "ms" },

        // Wrong JSON types.
        { SieveHandler.TypeName, """{"limit":"abc"}""", "limit" },
        { SieveHandler.TypeName, """{"limit":"2000"}""", "limit" },
        { SieveHandler.TypeName, """{"limit":1.5}""", "limit" },
        { SieveHandler.TypeName, """{"limit":null}""", "limit" },
        { SieveHandler.TypeName, """{"limit":[10]}""", "limit" },
        { Sha256Handler.TypeName, """{"size_kb":1024,"rounds":32,"seed":"x"}""", "seed" },
        { Sha256Handler.TypeName, """{"size_kb":1024,"rounds":32,"seed":4294967296}""", "seed" },
        { HeatHandler.TypeName, """{"n":true,"steps":50,"seed":0}""", "n" },
        { SleepHandler.TypeName, """{"ms":0.5}""", "ms" },
    };

    public static TheoryData<string, string, string> OutOfRangePayloads => new()
    {
        // Including absurd sizes that must be rejected before anything is allocated.
        { SieveHandler.TypeName, """{"limit":1000000000000}""", "limit" },
        { SieveHandler.TypeName, """{"limit":200000001}""", "limit" },
        { SieveHandler.TypeName, """{"limit":1}""", "limit" },
        { SieveHandler.TypeName, """{"limit":-5}""", "limit" },
        { HeatHandler.TypeName, """{"n":1000000,"steps":1000,"seed":0}""", "n" },
        { HeatHandler.TypeName, """{"n":2,"steps":10,"seed":0}""", "n" },
        { HeatHandler.TypeName, """{"n":32,"steps":-1,"seed":0}""", "steps" },
        { HeatHandler.TypeName, """{"n":32,"steps":100001,"seed":0}""", "steps" },
        { Sha256Handler.TypeName, """{"size_kb":1048576000,"rounds":32,"seed":0}""", "size_kb" },
        { Sha256Handler.TypeName, """{"size_kb":65537,"rounds":1,"seed":0}""", "size_kb" },
        { Sha256Handler.TypeName, """{"size_kb":0,"rounds":1,"seed":0}""", "size_kb" },
        { Sha256Handler.TypeName, """{"size_kb":1,"rounds":0,"seed":0}""", "rounds" },
        { Sha256Handler.TypeName, """{"size_kb":1,"rounds":10001,"seed":0}""", "rounds" },
        { SleepHandler.TypeName, """{"ms":-1}""", "ms" },
        { SleepHandler.TypeName, """{"ms":3600001}""", "ms" },
    };

    public static TheoryData<string> BuiltInTypes =>
    [
        NoopHandler.TypeName,
        Sha256Handler.TypeName,
        SieveHandler.TypeName,
        SleepHandler.TypeName,
        HeatHandler.TypeName,
        HttpGetHandler.TypeName,
    ];

    [Theory]
    [MemberData(nameof(MalformedPayloads))]
    public void Prepare_RejectsMissingFieldOrWrongJsonType_NamingTypeAndField(string type, string payload, string field)
    {
        var handler = BuiltInHandlers.Get(type);

        var error = HandlerRunner.Reject(handler, payload);

        Assert.IsType<System.Text.Json.JsonException>(error.InnerException);
        Assert.StartsWith($"Invalid '{type}' payload: ", error.Message, StringComparison.Ordinal);
        Assert.Contains(field, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(OutOfRangePayloads))]
    public void Prepare_RejectsOutOfRangeValue_StatingTheAllowedRange(string type, string payload, string field)
    {
        var handler = BuiltInHandlers.Get(type);

        var error = HandlerRunner.Reject(handler, payload);

        Assert.StartsWith($"'{field}' must be between ", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(BuiltInTypes))]
    public void Prepare_RejectsPayloadThatIsNotAnObject(string type)
    {
        var handler = BuiltInHandlers.Get(type);

        foreach (var payload in new[] { "[]", "\"text\"", "42", "null", "true" })
        {
            var error = HandlerRunner.Reject(handler, payload);

            Assert.Contains("must be a JSON object", error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Prepare_IgnoresUnknownMembers()
    {
        var handler = BuiltInHandlers.Get(SieveHandler.TypeName);

        var prepared = handler.Prepare(HandlerRunner.Payload("""{"limit":10,"comment":"extra"}"""));

        Assert.NotNull(prepared);
    }
}
