using System.ComponentModel.DataAnnotations;

namespace Fleet.Api;

/// <summary>
/// The <c>Api</c> section. Everything but the keys has a default that works on a developer machine:
/// <code>
/// "Api": {
///   "ApiKeys": [ "fleet_0123456789abcdef" ],   // read and write; this or AdminKeys needs a key, 16 characters or more
///   "ReadKeys": [ "fleet_read_0123456789" ],   // read only (dashboards, Prometheus)
///   "AdminKeys": [ "fleet_admin_012345678" ],  // read, write and admin (cancel)
///   "ReadsRequireKey": true,
///   "MaxTaskBytes": 1048576,                   // body of POST /tasks, and each task of a batch
///   "MaxBatchTasks": 10000,
///   "MaxBatchBytes": 67108864,                 // body of POST /tasks/batch
///   "ListLimitDefault": 100,
///   "ListLimitMax": 1000,
///   "KnownTypes": [ "word-count" ],            // accepted besides the built-in types
///   "CpuTypes": [ "word-count" ],              // sent to fleet-cpu besides the built-in CPU types
///   "Queues": { "reports": "cpu" },            // queues of worker groups besides fleet-cpu and fleet-io, with their lane
///   "RabbitMqManagementUri": "http://user:pass@127.0.0.1:15672/",
///   "PublishTimeoutSeconds": 10,
///   "RelayEnabled": true,
///   "RelayAfterSeconds": 15,                   // more than PublishTimeoutSeconds
///   "RelayIntervalSeconds": 2,
///   "RelayBatchSize": 1000,
///   "DueRelayIntervalMs": 250,                // delayed tasks; 0: this process does not publish them
///   "IdempotencyKeyHours": 24,
///   "WorkerStaleSeconds": 20,
///   "WorkerRecentMinutes": 60,
///   "StatsCacheSeconds": 1,
///   "StatsRecountSeconds": 60,
///   "StatsResyncMinutes": 10,
///   "WaitingSampleSeconds": 10                // fleet_tasks_waiting: one count over fleet.v_waiting_tasks this often
/// }
/// </code>
/// </summary>
public sealed class ApiOptions : IValidatableObject
{
    public const string SectionName = "Api";

    /// <summary>Keys with the scopes read and write (submit); sent as <c>Authorization: Bearer KEY</c> or <c>X-Api-Key: KEY</c>.</summary>
    public string[] ApiKeys { get; set; } = [];

    /// <summary>Keys with the scope read only: for dashboards, Prometheus and anything else that only watches.</summary>
    public string[] ReadKeys { get; set; } = [];

    /// <summary>Keys with the scopes read, write and admin (cancel a task): for operators.</summary>
    public string[] AdminKeys { get; set; } = [];

    /// <summary>
    /// True (the default): every read endpoint and <c>/metrics</c> need a key with the read scope. False opens them to
    /// anyone who reaches the API, payloads and results included: only for a private machine. <c>/health</c>,
    /// <c>/alive</c>, the OpenAPI document and the dashboard's files are open either way.
    /// </summary>
    public bool ReadsRequireKey { get; set; } = true;

    /// <summary>Each key list with its name in the configuration and the scopes its keys hold.</summary>
    internal IEnumerable<(string Name, string[] Keys, IReadOnlyList<string> Scopes)> KeyLists =>
    [
        ($"{SectionName}:{nameof(ReadKeys)}", ReadKeys, Security.ApiScopes.ReadOnly),
        ($"{SectionName}:{nameof(ApiKeys)}", ApiKeys, Security.ApiScopes.ReadWrite),
        ($"{SectionName}:{nameof(AdminKeys)}", AdminKeys, Security.ApiScopes.All),
    ];

    /// <summary>Largest body of <c>POST /tasks</c>, and largest single task inside a batch, in bytes.</summary>
    [Range(1024, 64 * 1024 * 1024)]
    public int MaxTaskBytes { get; set; } = 1024 * 1024;

    /// <summary>Most tasks in one <c>POST /tasks/batch</c>.</summary>
    [Range(1, 100_000)]
    public int MaxBatchTasks { get; set; } = 10_000;

    /// <summary>Largest body of <c>POST /tasks/batch</c>, in bytes (held in memory while it is validated).</summary>
    [Range(1024, 1024 * 1024 * 1024)]
    public long MaxBatchBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>Items per page of <c>GET /tasks</c> when <c>limit</c> is not given.</summary>
    [Range(1, 100_000)]
    public int ListLimitDefault { get; set; } = 100;

    /// <summary>The hard cap of <c>limit</c> in <c>GET /tasks</c>; larger values are reduced to it.</summary>
    [Range(1, 100_000)]
    public int ListLimitMax { get; set; } = 1000;

    /// <summary>Task types accepted besides the built-in ones (types of your own handlers, registered in your workers).</summary>
    public string[] KnownTypes { get; set; } = [];

    /// <summary>Types sent to <c>fleet-cpu</c> besides the built-in CPU types; they are known types too.</summary>
    public string[] CpuTypes { get; set; } = [];

    /// <summary>
    /// Queues of worker groups accepted besides <c>fleet-cpu</c> and <c>fleet-io</c> (a task's <c>queue</c>), each with
    /// its lane, <c>cpu</c> or <c>io</c> (docs/worker-groups.md); e.g. <c>Api__Queues__reports=cpu</c>. Written to
    /// <c>fleet.queues</c> at start, where the workers that serve them read the lane. Each must exist on the broker
    /// (its definitions' <c>FLEET_QUEUES</c>).
    /// </summary>
    public Dictionary<string, string> Queues { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// The RabbitMQ management HTTP API, <c>http://user:pass@host:port/</c>, for queue depths in <c>GET /stats</c>. Without user info the broker's AMQP credentials are used.
    /// For a cluster, one URI per node, comma-separated: a node that does not answer is passed over for the next.
    /// </summary>
    public string? RabbitMqManagementUri { get; set; }

    /// <summary>How long a submission waits for the broker's confirms (all of them, whole batch) before it answers anyway and leaves the rest to the relay.</summary>
    [Range(1, 300)]
    public int PublishTimeoutSeconds { get; set; } = 10;

    /// <summary>Whether this process runs the outbox relay (it still relays only while it holds the advisory lock).</summary>
    public bool RelayEnabled { get; set; } = true;

    /// <summary>
    /// A task still <c>queued</c> with <c>published_at</c> null this long after its submit is republished. Must be more
    /// than <see cref="PublishTimeoutSeconds"/>: younger rows may belong to a submission that is still publishing.
    /// </summary>
    [Range(1, 86_400)]
    public int RelayAfterSeconds { get; set; } = 15;

    /// <summary>How often the relay looks for unpublished tasks.</summary>
    [Range(1, 3600)]
    public int RelayIntervalSeconds { get; set; } = 2;

    /// <summary>Most tasks one relay round republishes; a full round is followed by another at once.</summary>
    [Range(1, 50_000)]
    public int RelayBatchSize { get; set; } = 1000;

    /// <summary>
    /// How often, in milliseconds, this process asks whether a delayed task's time has come, and publishes it
    /// (only while it holds the due relay's advisory lock; workers poll too). A task starts within about this
    /// long after its <c>notBefore</c> on an idle fleet. The probe is one index lookup. 0 turns it off here.
    /// </summary>
    [Range(0, 60_000)]
    public int DueRelayIntervalMs { get; set; } = 250;

    /// <summary>How long an <c>Idempotency-Key</c> is remembered.</summary>
    [Range(1, 24 * 365)]
    public int IdempotencyKeyHours { get; set; } = 24;

    /// <summary>A worker whose last heartbeat is older than this is not live (<c>"live": false</c> in <c>GET /workers</c>).</summary>
    [Range(1, 86_400)]
    public int WorkerStaleSeconds { get; set; } = 20;

    /// <summary><c>GET /workers</c> also lists workers that stopped (or went silent) within this many minutes.</summary>
    [Range(0, 7 * 24 * 60)]
    public int WorkerRecentMinutes { get; set; } = 60;

    /// <summary>
    /// <c>GET /stats</c> answers from a snapshot at most this old, so that any number of open dashboards cost the
    /// database one set of queries per interval.
    /// </summary>
    [Range(0, 60)]
    public double StatsCacheSeconds { get; set; } = 1;

    /// <summary>
    /// Each <c>GET /stats</c> refresh recounts the tasks that finished within this many seconds; older counts are
    /// kept in memory. A task whose final state commits later than this after its <c>finished_at</c> is counted at
    /// the next full recount.
    /// </summary>
    [Range(5, 3600)]
    public int StatsRecountSeconds { get; set; } = 60;

    /// <summary>How often <c>GET /stats</c> recounts the whole last 24 hours (also at the first request).</summary>
    [Range(1, 1440)]
    public int StatsResyncMinutes { get; set; } = 10;

    /// <summary>
    /// How often <c>fleet_tasks_waiting</c> is counted (one aggregate over <c>fleet.v_waiting_tasks</c>, whatever the
    /// scrape rate). The view reads every queued unpublished task, so it is not counted more often by default.
    /// </summary>
    [Range(1, 3600)]
    public int WaitingSampleSeconds { get; set; } = 10;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (ApiKeys.Length == 0 && AdminKeys.Length == 0)
        {
            yield return new ValidationResult(
                "Api:ApiKeys (or Api:AdminKeys) needs at least one key (environment variable Api__ApiKeys__0): every write needs one.", [nameof(ApiKeys)]);
        }

        // Keys are named by list and position, never shown: validation errors end up in logs.
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, keys, _) in KeyLists)
        {
            for (var i = 0; i < keys.Length; i++)
            {
                var key = keys[i]?.Trim() ?? "";
                if (key.Length < 16)
                {
                    yield return new ValidationResult($"{name}:{i} must be at least 16 characters long.", [nameof(ApiKeys)]);
                }
                else if (!seen.TryAdd(key, $"{name}:{i}"))
                {
                    // One key in two places would hold whichever scopes the handler met first: refuse the doubt.
                    yield return new ValidationResult($"{name}:{i} is the same key as {seen[key]}; a key belongs to one list only.", [nameof(ApiKeys)]);
                }
            }
        }

        if (ListLimitDefault > ListLimitMax)
        {
            yield return new ValidationResult("Api:ListLimitDefault must not exceed Api:ListLimitMax.", [nameof(ListLimitDefault)]);
        }

        if (MaxBatchBytes < MaxTaskBytes)
        {
            yield return new ValidationResult("Api:MaxBatchBytes must be at least Api:MaxTaskBytes.", [nameof(MaxBatchBytes)]);
        }

        if (RelayAfterSeconds <= PublishTimeoutSeconds)
        {
            yield return new ValidationResult(
                "Api:RelayAfterSeconds must be more than Api:PublishTimeoutSeconds, or the relay republishes submissions that are still publishing.",
                [nameof(RelayAfterSeconds)]);
        }

        if (DueRelayIntervalMs is > 0 and < 50)
        {
            // Each poll is a statement; more often than 20 times a second buys no precision worth its load.
            yield return new ValidationResult("Api:DueRelayIntervalMs must be 0 (off) or from 50 to 60000.", [nameof(DueRelayIntervalMs)]);
        }

        if (KnownTypes.Concat(CpuTypes).Any(string.IsNullOrWhiteSpace))
        {
            yield return new ValidationResult("Api:KnownTypes and Api:CpuTypes must not contain empty names.", [nameof(KnownTypes)]);
        }

        foreach (var (name, lane) in Queues)
        {
            if (Fleet.Client.QueueCatalog.Problem(name, lane) is { } problem)
            {
                yield return new ValidationResult($"Api:Queues: {problem}", [nameof(Queues)]);
            }
        }

        var managementUris = Monitoring.RabbitMqManagementClient.SplitUris(RabbitMqManagementUri);
        for (var i = 0; i < managementUris.Count; i++)
        {
            // The value is not quoted back: it may hold a password.
            if (!Uri.TryCreate(managementUris[i], UriKind.Absolute, out var management) || management.Scheme is not ("http" or "https"))
            {
                yield return new ValidationResult(
                    $"Api:RabbitMqManagementUri must be an http:// or https:// URI, or several comma-separated (one per node); entry {i + 1} of {managementUris.Count} is not.",
                    [nameof(RabbitMqManagementUri)]);
            }
        }
    }
}
