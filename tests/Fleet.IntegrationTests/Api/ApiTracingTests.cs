using System.Diagnostics;
using System.Net;
using Fleet.IntegrationTests.Support;
using Fleet.ServiceDefaults;
using Fleet.Worker;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Trace;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// One task submitted over HTTP is one trace, from the request through the publish, the worker's consume and handler
/// to its database writes, with the API and a worker in this process, each with its own tracer provider (the real
/// AddFleetTelemetry setup) exporting to memory.
/// </summary>
public sealed class ApiTracingTests(FleetFixture fleet) : ApiTest(fleet)
{
    [Fact]
    public async Task OneTaskSubmittedOverHttp_IsOneTrace_FromTheRequestToTheDatabaseWrite()
    {
        await Fleet.StopWorkerAsync();
        var apiSpans = new SpanList();
        var workerSpans = new SpanList();
        await using var api = await ApiHost.StartAsync(Fleet, RecordAllTraces, s => s.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(apiSpans)));
        var worker = await StartTracedWorkerAsync(workerSpans);
        try
        {
            await AssertOneTraceAsync(api, apiSpans, workerSpans);
        }
        finally
        {
            await worker.StopAsync();
            worker.Dispose();
        }
    }

    private async Task AssertOneTraceAsync(ApiHost api, SpanList apiSpans, SpanList workerSpans)
    {
        using var http = api.CreateClient();

        using var response = await http.PostAsync("tasks", Json("""{"type": "noop"}"""));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var id = (Guid)(await ReadJsonAsync(response))["id"]!;
        await WaitForFinalAsync([id]);

        // Spans are exported when they end, and the outer ones end last (MassTransit's receive after the ack): wait
        // until the chain of parents from the task's result write reaches a root.
        Dictionary<ActivitySpanId, Activity> spans = [];
        Activity? task = null;
        List<Activity> chain = [];
        Assert.True(await EventuallyAsync(() =>
        {
            spans = Snapshot(apiSpans, workerSpans);
            task = spans.Values.FirstOrDefault(s => s.OperationName == "fleet.task" && Equals(s.GetTagItem("fleet.task.id"), id));
            var commit = spans.Values.FirstOrDefault(s => s.OperationName == "fleet.task.commit" && s.ParentSpanId == task?.SpanId);
            chain = commit is null ? [] : ChainOfParents(commit, spans);
            return Task.FromResult(chain.Count > 0 && chain[^1].ParentSpanId == default
                && spans.Values.Any(s => s.OperationName == "fleet.ledger.write" && s.Links.Any(l => l.Context.SpanId == commit!.SpanId)));
        }, TimeSpan.FromSeconds(30)), $"spans seen: {Describe(spans.Values)}");

        var trace = spans.Values.Where(s => s.TraceId == task!.TraceId).ToList();
        var commit = Single(trace, "fleet.task.commit");
        var claim = Single(trace, "fleet.task.claim");
        var handler = Single(trace, "fleet.task.execute");
        Assert.Equal(task!.SpanId, commit.ParentSpanId);
        Assert.Equal(task.SpanId, claim.ParentSpanId);
        Assert.Equal(task.SpanId, handler.ParentSpanId);

        // From the database write up to the HTTP request, each span the parent of the next.

        var described = string.Join(" <- ", chain.Select(s => $"{s.Source.Name}:{s.DisplayName}({s.Kind})"));
        Assert.All(chain, s => Assert.Equal(task.TraceId, s.TraceId));
        var server = chain[^1];
        Assert.True(server.Kind == ActivityKind.Server && server.DisplayName.Contains("/tasks", StringComparison.Ordinal), $"the chain does not end at the HTTP request: {described}");
        Assert.Equal(default, server.ParentSpanId);
        var consume = chain.FindIndex(s => s.Source.Name == "MassTransit" && s.Kind == ActivityKind.Consumer);
        var send = chain.FindIndex(s => s.Source.Name == Client.ClientTelemetry.Name && s.Kind == ActivityKind.Producer);
        var submit = chain.FindIndex(s => s.OperationName == "fleet.submit");
        Assert.True(chain.IndexOf(task) < consume && consume < send && send < submit && submit < chain.Count - 1,
            $"expected commit <- fleet.task <- consume <- send <- fleet.submit <- request, got {described}");
        Assert.Equal(id.ToString(), chain[submit].GetTagItem("fleet.task.id")?.ToString());

        // The batched write that committed the result links back to this task's commit span, and its SQL is a child.
        // The batch is a trace of its own (it serves many tasks), not a child of whichever task created the ledger.
        var batch = spans.Values.Single(s => s.OperationName == "fleet.ledger.write" && s.Links.Any(l => l.Context.SpanId == commit.SpanId));
        Assert.Equal(default, batch.ParentSpanId);
        Assert.NotEqual(task.TraceId, batch.TraceId);
        Assert.Contains(spans.Values, s => s.Source.Name == "Npgsql" && s.ParentSpanId == batch.SpanId && s.TraceId == batch.TraceId);

        // The API's insert of the task row is in the request's trace too.
        Assert.Contains(trace, s => s.Source.Name == "Npgsql" && s.ParentSpanId == chain[submit].SpanId);
    }

    /// <summary>
    /// Without an OTLP endpoint the hosts record no spans (only trace ids for the logs); an exporter of one's own,
    /// like this test's in-memory one, comes with a sampler choice, as it would in production.
    /// </summary>
    private static readonly Dictionary<string, string?> RecordAllTraces = new() { ["OTEL_TRACES_SAMPLER"] = "always_on" };

    private async Task<IHost> StartTracedWorkerAsync(SpanList exported)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(Fleet.WorkerSettings("traced", cpuConcurrency: 1));
        builder.Configuration.AddInMemoryCollection(RecordAllTraces);
        builder.AddServiceDefaults();
        builder.AddFleetWorker();
        builder.Services.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(exported));
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    private static List<Activity> ChainOfParents(Activity span, Dictionary<ActivitySpanId, Activity> spans)
    {
        var chain = new List<Activity> { span };
        while (spans.TryGetValue(chain[^1].ParentSpanId, out var parent))
        {
            chain.Add(parent);
        }

        return chain;
    }

    private static Activity Single(List<Activity> trace, string name)
    {
        var matches = trace.Where(s => s.OperationName == name).ToList();
        Assert.True(matches.Count == 1, $"expected one {name} span in the trace, found {matches.Count}: {Describe(trace)}");
        return matches[0];
    }

    /// <summary>Both providers see the spans of both hosts (one process): the union, once per span.</summary>
    private static Dictionary<ActivitySpanId, Activity> Snapshot(SpanList apiSpans, SpanList workerSpans)
    {
        var all = new Dictionary<ActivitySpanId, Activity>();
        foreach (var span in apiSpans.ToArray().Concat(workerSpans.ToArray()))
        {
            all.TryAdd(span.SpanId, span);
        }

        return all;
    }

    private static string Describe(IEnumerable<Activity> spans) =>
        string.Join("; ", spans.Select(s => $"{s.Source.Name}:{s.DisplayName}({s.Kind}) {s.TraceId}/{s.SpanId}<-{s.ParentSpanId}"));

    /// <summary>The exporters add from their processors' threads while the test reads: a list under a lock.</summary>
    private sealed class SpanList : ICollection<Activity>
    {
        private readonly List<Activity> _items = [];

        public int Count
        {
            get
            {
                lock (_items)
                {
                    return _items.Count;
                }
            }
        }

        public bool IsReadOnly => false;

        public void Add(Activity item)
        {
            lock (_items)
            {
                _items.Add(item);
            }
        }

        public Activity[] ToArray()
        {
            lock (_items)
            {
                return [.. _items];
            }
        }

        public void Clear()
        {
            lock (_items)
            {
                _items.Clear();
            }
        }

        public bool Contains(Activity item) => ToArray().Contains(item);

        public void CopyTo(Activity[] array, int arrayIndex) => ToArray().CopyTo(array, arrayIndex);

        public bool Remove(Activity item)
        {
            lock (_items)
            {
                return _items.Remove(item);
            }
        }

        public IEnumerator<Activity> GetEnumerator() => ((IEnumerable<Activity>)ToArray()).GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
