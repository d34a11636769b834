using Npgsql;

namespace Fleet.Client;

/// <summary>
/// Submits tasks to the fleet and reads their state. Submissions go through <see cref="TaskSubmitter"/>, the
/// pipeline the HTTP API uses too: the task rows commit as <c>queued</c> with <c>published_at</c> null, then the
/// messages are sent with publisher confirms, then <c>published_at</c> is stamped. A crash in between leaves rows
/// that the API's relay finds and republishes, and workers are idempotent by task id, so a republish never runs a
/// task twice after it is final. Messages go out as the public plain JSON body through
/// <see cref="RabbitMqTaskPublisher"/>, with pipelined publisher confirms.
/// Thread-safe; create one per process and dispose it at shutdown.
/// </summary>
public sealed class FleetClient : IAsyncDisposable
{
    private readonly FleetClientOptions _options;
    private readonly NpgsqlDataSource _dataSource;
    private readonly RabbitMqTaskPublisher _publisher;
    private readonly TaskSubmitter _submitter;
    private readonly TaskReads _reads;
    private readonly TaskRequeuer _requeuer;

    public FleetClient(FleetClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        System.ComponentModel.DataAnnotations.Validator.ValidateObject(options, new(options), validateAllProperties: true);
        _options = options;
        _dataSource = CreateDataSource(options.PostgresConnectionString);
        var broker = RabbitMqAddress.Parse(options.RabbitMqUri) with { Certificates = options.Tls.CreateRabbitMqValidator(), QueueType = options.QueueType };
        _publisher = new RabbitMqTaskPublisher(broker, $"fleet-client {Environment.MachineName}:{Environment.ProcessId}");
        var submitterOptions = new TaskSubmitterOptions { DefaultMaxAttempts = options.DefaultMaxAttempts, ChunkSize = options.BulkChunkSize };
        submitterOptions.CpuTypes.Clear();
        submitterOptions.CpuTypes.UnionWith(options.CpuTypes);
        _submitter = new TaskSubmitter(_dataSource, _publisher, submitterOptions);
        _reads = new TaskReads(_dataSource);
        _requeuer = new TaskRequeuer(_dataSource, _submitter);
    }

    /// <summary>
    /// The client's pool runs the same few statements over and over, so it prepares them (<c>Max Auto Prepare</c>),
    /// plans them once (<c>plan_cache_mode=force_generic_plan</c>) and skips Npgsql's reset of a pooled connection
    /// (seven statements before each reuse; the client leaves no session state); explicit settings in the connection
    /// string win. Planning each chunk's INSERT and stamp afresh cost more than running them, only to pick the same
    /// primary-key lookups (docs/decisions/0101-client-pool-plans-once.md). The client's reads (a task by id, a
    /// batch's counts) plan the same way for any value. As in the worker's ledger pool
    /// (<c>FleetDatabaseExtensions.CreateLedgerDataSource</c>), sequential scans, hash and merge joins and
    /// materialisation are priced out (unless <c>Options</c> sets an <c>enable_</c> itself): a plan made once on tables
    /// without statistics (new, truncated, restored) stamped <c>published_at</c> with a hash semi-join over two
    /// sequential scans of <c>fleet.tasks</c>, per chunk, until the next analyse (HotPathPlanTests).
    /// </summary>
    internal static NpgsqlDataSource CreateDataSource(string connectionString)
    {
        var written = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString };
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (!written.ContainsKey("Max Auto Prepare") && !written.ContainsKey("MaxAutoPrepare"))
        {
            builder.MaxAutoPrepare = 16;
        }

        if (!written.ContainsKey("No Reset On Close") && !written.ContainsKey("NoResetOnClose"))
        {
            builder.NoResetOnClose = true;
        }

        if (builder.Options?.Contains("plan_cache_mode", StringComparison.OrdinalIgnoreCase) != true)
        {
            builder.Options = $"{builder.Options} -c plan_cache_mode=force_generic_plan".TrimStart();
        }

        if (builder.Options?.Contains("enable_", StringComparison.OrdinalIgnoreCase) != true)
        {
            builder.Options = $"{builder.Options} -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off".TrimStart();
        }

        return NpgsqlDataSource.Create(builder.ConnectionString);
    }

    /// <summary>Submits one task and returns its id once it is stored and confirmed by the broker.</summary>
    public async Task<Guid> SubmitAsync(TaskRequest request, CancellationToken cancellationToken = default)
    {
        var ids = await SubmitManyAsync([request], cancellationToken).ConfigureAwait(false);
        return ids[0];
    }

    /// <summary>
    /// Submits many tasks with bulk writes and pipelined confirmed sends; returns their ids in order. The tasks go in
    /// chunks of <see cref="FleetClientOptions.BulkChunkSize"/>, each stored, sent and stamped on its own, with up to
    /// <see cref="FleetClientOptions.ChunksInFlight"/> chunks at different steps at once (one chunk's INSERT runs
    /// while another waits for its confirms), so workers start on a long submission while the rest is written.
    /// </summary>
    /// <exception cref="TaskPublishException">A chunk is stored but the broker did not confirm it (the relay of a running API publishes it).</exception>
    public async Task<IReadOnlyList<Guid>> SubmitManyAsync(IEnumerable<TaskRequest> requests, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var pending = new Queue<Task<SubmitResult>>();
        var ids = new List<Guid>();
        try
        {
            foreach (var chunk in requests.Chunk(_options.BulkChunkSize))
            {
                if (pending.Count >= _options.ChunksInFlight)
                {
                    ids.AddRange(Accepted(await pending.Dequeue().ConfigureAwait(false)));
                }

                pending.Enqueue(_submitter.SubmitAsync(chunk, cancellationToken: cancellationToken));
            }

            while (pending.Count > 0)
            {
                ids.AddRange(Accepted(await pending.Dequeue().ConfigureAwait(false)));
            }
        }
        finally
        {
            // A failed chunk ends the call, but the chunks already started still finish (or fail) before it returns.
            while (pending.Count > 0)
            {
                await ((Task)pending.Dequeue()).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        return ids;

        static IReadOnlyList<Guid> Accepted(SubmitResult result) =>
            result.PublishError is null ? result.TaskIds : throw new TaskPublishException(result.TaskIds, result.PublishError);
    }

    /// <summary>
    /// Submits <paramref name="requests"/> as one batch, in one transaction, with an optional
    /// <paramref name="onComplete"/> task that is created once every task of the batch is final (whatever the
    /// outcomes), carrying the batch id (<c>TaskContext.AfterBatchId</c>); a new batch id unless <paramref name="batchId"/> is given. One transaction on purpose: the callback
    /// must never see part of its batch. Returns the batch id and the ids in request order.
    /// </summary>
    /// <exception cref="TaskPublishException">The batch is stored but the broker did not confirm it (the relay of a running API publishes it).</exception>
    public async Task<SubmitResult> SubmitBatchAsync(
        IReadOnlyList<TaskRequest> requests, TaskRequest? onComplete = null, Guid? batchId = null, CancellationToken cancellationToken = default)
    {
        var options = new SubmitOptions { BatchId = batchId ?? Guid.CreateVersion7(), OnComplete = onComplete };
        var result = await _submitter.SubmitAsync(requests, options, cancellationToken)
            .ConfigureAwait(false);
        return result.PublishError is null ? result : throw new TaskPublishException(result.TaskIds, result.PublishError);
    }

    /// <summary>Reads one task, or null when no task has that id.</summary>
    public Task<TaskInfo?> GetAsync(Guid taskId, CancellationToken cancellationToken = default) =>
        _reads.GetAsync(taskId, cancellationToken);

    /// <summary>Counts a batch's tasks by state (one indexed aggregate).</summary>
    public Task<BatchProgress> GetBatchProgressAsync(Guid batchId, CancellationToken cancellationToken = default) =>
        _reads.GetBatchProgressAsync(batchId, cancellationToken);

    /// <summary>Runs one final task again as a new task (<see cref="TaskRequeuer"/>); the old row never changes.</summary>
    public Task<RequeueOneResult> RequeueAsync(Guid taskId, CancellationToken cancellationToken = default) =>
        _requeuer.RequeueAsync(taskId, cancellationToken: cancellationToken);

    /// <summary>Runs the final tasks a filter selects again, each as a new task (<see cref="TaskRequeuer"/>).</summary>
    public Task<RequeueResult> RequeueAsync(RequeueFilter filter, CancellationToken cancellationToken = default) =>
        _requeuer.RequeueAsync(filter, cancellationToken: cancellationToken);

    /// <summary>Polls until the task is final or <paramref name="timeout"/> passes; returns the last state read.</summary>
    public async Task<TaskInfo?> WaitAsync(Guid taskId, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        var delay = TimeSpan.FromMilliseconds(20);
        while (true)
        {
            var info = await GetAsync(taskId, cancellationToken).ConfigureAwait(false);
            if (info is { IsFinal: true } || timeoutSource.IsCancellationRequested)
            {
                return info;
            }

            try
            {
                await Task.Delay(delay, timeoutSource.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return await GetAsync(taskId, cancellationToken).ConfigureAwait(false);
            }

            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 500));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _publisher.DisposeAsync().ConfigureAwait(false);
        await _dataSource.DisposeAsync().ConfigureAwait(false);
    }
}
