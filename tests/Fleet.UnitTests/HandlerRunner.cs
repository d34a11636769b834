using System.Text.Json;
using Fleet.Tasks;

namespace Fleet.UnitTests;

/// <summary>Runs a handler the way the worker does: <c>Prepare(payload)</c>, then the prepared task.</summary>
internal static class HandlerRunner
{
    public static JsonElement Payload(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }

    public static async Task<JsonElement> RunAsync(ITaskHandler handler, string json, CancellationToken cancellationToken = default)
    {
        var prepared = handler.Prepare(Payload(json));
        return await prepared(cancellationToken);
    }

    public static TaskValidationException Reject(ITaskHandler handler, string json) =>
        Assert.Throws<TaskValidationException>(() => handler.Prepare(Payload(json)));
}
