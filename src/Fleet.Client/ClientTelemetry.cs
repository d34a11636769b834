using System.Diagnostics;

namespace Fleet.Client;

/// <summary>
/// The ActivitySource <c>Fleet.Client</c>: a <c>fleet.submit</c> span per submission (<see cref="TaskSubmitter"/>),
/// whose children are the database insert and the <see cref="RabbitMqTaskPublisher"/>'s send span; the messages carry
/// the trace context in their headers, so the worker's consume and everything under it join the submitter's trace. Add the source to
/// your own tracer provider to see it; without a listener no span is created.
/// </summary>
public static class ClientTelemetry
{
    public const string Name = "Fleet.Client";

    public static readonly ActivitySource Source = new(Name);
}
