using Fleet.Client;
using Fleet.Contracts;
using Fleet.Messaging;
using Fleet.Persistence;
using Fleet.ServiceDefaults;
using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;
using Fleet.Worker.FaultInjection;
using Fleet.Worker.MessagePath;
using Fleet.Worker.ProcessLane;
using Fleet.Worker.Reconciliation;
using Fleet.Worker.Telemetry;
using MassTransit;
using MassTransit.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Worker;

public static class WorkerHostingExtensions
{
    /// <summary>
    /// Everything a worker process runs: options, the task handlers, the CPU lane, the batched ledger, the
    /// heartbeat, and MassTransit on RabbitMQ with one receive endpoint per configured queue.
    /// </summary>
    public static IHostApplicationBuilder AddFleetWorker(this IHostApplicationBuilder builder, Action<IServiceCollection>? configureTasks = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;

        // First, so that a connection the Tls settings forbid stops the start before anything connects.
        builder.AddFleetTls();
        services.AddOptions<WorkerOptions>()
            .BindConfiguration(WorkerOptions.SectionName)
            .PostConfigure(o => o.Queues = o.Queues.Length == 0 ? [.. TaskQueues.All] : o.Queues)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        var broker = builder.Configuration.GetRabbitMqAddress();

        builder.AddFleetDatabase();
        services.AddWorkerTasks(builder.Configuration, configureTasks);
        var faultInjection = builder.Configuration.GetValue<bool>($"{WorkerOptions.SectionName}:FaultInjection");
        services.AddSingleton(broker);
        services.AddMessagePath();
        builder.AddWorkerTelemetry();

        // Sends task messages again (the reconciler's republish, a lookahead message handed back): the plain JSON
        // body with publisher confirms, as producers send it.
        services.AddSingleton(sp => new RabbitMqTaskPublisher(broker, $"fleet-worker-publisher {sp.GetRequiredService<IOptions<WorkerOptions>>().Value.HostName}:{Environment.ProcessId}"));
        var postgres = builder.Configuration.GetFleetDatabaseConnectionString();
        services.AddKeyedSingleton(nameof(TaskLedger), (_, _) => FleetDatabaseExtensions.CreateLedgerDataSource(postgres));
        services.AddSingleton(sp =>
        {
            var worker = sp.GetRequiredService<IOptions<WorkerOptions>>().Value;
            return new TaskLedger(
                sp.GetRequiredKeyedService<NpgsqlDataSource>(nameof(TaskLedger)),
                sp.GetRequiredService<WorkerIdentity>().Id,
                worker.WriteBatchSize,
                maxOutage: TimeSpan.FromSeconds(worker.MaxDatabaseOutageSeconds),
                logger: sp.GetRequiredService<ILogger<TaskLedger>>());
        });

        // First of all: lanes that exist with another queue type than RabbitMq:QueueType stop the start with one clear
        // line, before the worker registers or the bus retries a refused declare forever.
        services.AddHostedService<LaneQueueTypeCheck>();

        // Hosted services stop in reverse order: the heartbeat, added before the bus, records "stopped" after the
        // drain. It also builds the handler registry at start, so a bad handler setup fails the start, not a message.
        services.AddHostedService<WorkerHeartbeat>();
        services.AddSingleton<TaskReconciler>();
        services.AddHostedService(sp => sp.GetRequiredService<TaskReconciler>());
        services.AddHostedService<DuePublisher>();
        services.AddFleetDispatcher(sp => sp.GetRequiredService<NpgsqlDataSource>(), sp => sp.GetRequiredService<RabbitMqTaskPublisher>());
        services.AddHostedService<DispatchRunner>();
        services.AddFleetBatchWatcher(sp => sp.GetRequiredService<NpgsqlDataSource>(), sp => sp.GetRequiredService<RabbitMqTaskPublisher>());
        services.AddHostedService<BatchWatchRunner>();

        // Drain: the bus stops taking messages and waits for held ones up to DrainSeconds, then hands back the rest.
        services.AddOptions<MassTransitHostOptions>().Configure<IOptions<WorkerOptions>>((o, worker) =>
        {
            o.WaitUntilStarted = true;
            o.StopTimeout = TimeSpan.FromSeconds(worker.Value.DrainSeconds);
        });
        services.AddOptions<HostOptions>().Configure<IOptions<WorkerOptions>>((o, worker) =>
            o.ShutdownTimeout = TimeSpan.FromSeconds(worker.Value.DrainSeconds + 15));

        services.AddMassTransit(x =>
        {
            // MassTransit 8.4+ reports usage to its vendor over the internet by default; a worker fleet sends nothing
            // anywhere it was not told to. Only an explicit MASSTRANSIT_USAGE_TELEMETRY=true turns it back on.
            x.DisableUsageTelemetry();
            x.AddConsumer<ProcessTaskConsumer>();
            x.AddConsumer<CancelTaskConsumer>();
            x.UsingRabbitMq((context, cfg) =>
            {
                var worker = context.GetRequiredService<IOptions<WorkerOptions>>().Value;
                cfg.UseFleetHost(broker, $"fleet-worker {worker.HostName}:{Environment.ProcessId}");

                // Plain JSON bodies (any AMQP client) and MassTransit envelopes both arrive on the same queues.
                cfg.UseRawJsonDeserializer(RawSerializerOptions.All, isDefault: true);

                // Short database blips (restart, failover) are ridden out in place instead of faulting the message.
                // A statement PostgreSQL refuses outright would only be refused again, so it is not retried.
                cfg.UseMessageRetry(r =>
                {
                    r.Handle<NpgsqlException>(ex => ex is not PostgresException { IsTransient: false });
                    r.Handle<TimeoutException>();
                    r.Exponential(8, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(300));
                });

                // Cancels are broadcast: each worker has its own auto-deleted queue on the fleet-control fanout.
                cfg.ReceiveEndpoint(new TemporaryEndpointDefinition($"fleet-control-{worker.HostName}"), endpoint =>
                {
                    endpoint.ConfigureConsumeTopology = false;
                    endpoint.Bind(TaskQueues.Control);
                    endpoint.ConfigureConsumer<CancelTaskConsumer>(context);
                });
            });
        });

        // The lanes' endpoints are connected to the running bus instead of configured with it, so that a paused lane
        // (fleet.queue_pauses) is never consumed, not even by a worker started while it is paused (LanePauses).
        // Registered after MassTransit: it starts after the bus and stops before it.
        services.AddSingleton(sp =>
        {
            var worker = sp.GetRequiredService<IOptions<WorkerOptions>>();
            var unreadable = sp.GetRequiredService<ILogger<TaskMessageDeserializer>>();
            var served = sp.GetRequiredService<ServedQueues>();
            return new LanePauses(
                sp.GetRequiredService<IReceiveEndpointConnector>(),
                new QueuePauses(sp.GetRequiredService<NpgsqlDataSource>()),
                served,
                worker,
                (context, endpoint, queue) => ConfigureLaneEndpoint(context, (IRabbitMqReceiveEndpointConfigurator)endpoint, queue, served.IsCpu(queue), worker.Value, broker, faultInjection, unreadable),
                sp.GetRequiredService<ILogger<LanePauses>>());
        });
        services.AddHostedService(sp => sp.GetRequiredService<LanePauses>());

        return builder;
    }

    /// <summary>
    /// One lane queue's endpoint. Each lane has two queues: the lane, and its dispatch queue, where the dispatcher
    /// publishes tasks with a tenant, a priority or a limit a few at a time. Consumed side by side with the same
    /// settings, so such a task never waits behind the lane's backlog, and the lane's own tasks keep their share of
    /// the places.
    /// </summary>
    private static void ConfigureLaneEndpoint(
        IBusRegistrationContext context, IRabbitMqReceiveEndpointConfigurator endpoint, string queue, bool cpu, WorkerOptions worker,
        RabbitMqAddress broker, bool faultInjection, ILogger<TaskMessageDeserializer> unreadable)
    {
        // The CPU lane's places bound its running and claimed-ahead tasks (CpuLane.RunAsync); the endpoint
        // holds the lookahead on top, so the next claim ahead finds its message delivered. Every cpu queue a worker
        // serves (fleet-cpu, declared ones) feeds the same lane: the cores are shared, not multiplied.
        var concurrency = cpu
            ? worker.CpuConcurrency + worker.EffectiveCpuClaimAhead + worker.EffectiveCpuLookahead
            : worker.IoConcurrency;

        // Without this every endpoint also binds the message-type exchange, and one publish of a
        // task would land in both lanes. Producers send to the lane's exchange/queue instead.
        endpoint.ConfigureConsumeTopology = false;

        // The lane and its _error/_skipped queues (which copy the lane's arguments) get the deployment's
        // queue type. Only here: the per-worker control queue is auto-deleted, which a quorum queue cannot
        // be.
        if (broker.QueueType == BrokerQueueType.Quorum)
        {
            endpoint.SetQuorumQueue();
        }

        // Prefetch follows the lane's concurrency (plus the small CPU lookahead): an idle worker
        // never waits behind a backlog that another worker has prefetched but cannot start yet.
        endpoint.PrefetchCount = concurrency;
        endpoint.ConcurrentMessageLimit = concurrency;

        // A body that cannot be read as a task but names one becomes a failed task, not an _error
        // message: plain JSON (the default for any content type) and MassTransit envelopes alike.
        endpoint.AddDeserializer(new TaskMessageDeserializerFactory(new SystemTextJsonRawMessageSerializerFactory(RawSerializerOptions.All), unreadable), isDefault: true);
        endpoint.AddDeserializer(new TaskMessageDeserializerFactory(new SystemTextJsonMessageSerializerFactory(), unreadable));
        endpoint.ConfigureConsumer<ProcessTaskConsumer>(context, consumer =>
        {
            if (faultInjection)
            {
                consumer.Message<ProcessTask>(m => m.UseFilter(new CommitThenExitFilter()));
            }
        });
    }

    /// <summary>
    /// The task handlers a worker knows: the built-in types, the fault-injection types when <c>Worker:FaultInjection</c>
    /// is true (a consume filter comes with them in the worker), and the host's own (<paramref name="configureTasks"/>).
    /// A process-lane child registers them through this same method, so that it knows every type its worker sends it.
    /// </summary>
    public static IServiceCollection AddWorkerTasks(this IServiceCollection services, IConfiguration configuration, Action<IServiceCollection>? configureTasks = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<HttpGetOptions>()
            .BindConfiguration($"{WorkerOptions.SectionName}:HttpGet")
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddFleetTasks();

        // Task types that misbehave on purpose: never in a worker not configured for them.
        if (configuration.GetValue<bool>($"{WorkerOptions.SectionName}:FaultInjection"))
        {
            services.AddFaultInjectionHandlers();
        }

        configureTasks?.Invoke(services);
        return services;
    }

    /// <summary>What a task message passes through from delivery to acknowledgement (see MessagePath/README.md).</summary>
    private static IServiceCollection AddMessagePath(this IServiceCollection services)
    {
        services.AddSingleton<HeldTasks>();
        services.AddSingleton<CrashGuard>();
        services.AddSingleton<CpuLane>();
        services.AddSingleton<ServedQueues>();
        services.AddSingleton<ProcessPool>();
        services.AddSingleton<RunningTasks>();
        services.AddSingleton<TaskExecutor>();
        services.AddSingleton<TaskProgress>();
        services.AddSingleton<ITaskProgressSink>(sp => sp.GetRequiredService<TaskProgress>());
        services.AddHostedService<ProgressFlusher>();
        services.AddSingleton<EarlyTasks>();
        services.AddSingleton(sp => new LimitCatalog(sp.GetRequiredService<NpgsqlDataSource>(), LimitCatalog.DefaultRefresh,
            logger: sp.GetRequiredService<ILogger<LimitCatalog>>()));
        return services;
    }

    /// <summary>The worker's identity, metrics, traces, health checks and heartbeat.</summary>
    private static IHostApplicationBuilder AddWorkerTelemetry(this IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddSingleton<WorkerIdentity>();
        services.AddSingleton<WorkerMetrics>();
        services.AddSingleton<ProcessLaneMetrics>();
        builder.AddFleetTelemetry("fleet-worker", WorkerMetrics.Name, PersistenceTelemetry.Name);
        services.AddHealthChecks()
            .AddCheck<DatabaseWritesHealthCheck>("database-writes", tags: [TelemetryExtensions.ReadyTag])
            .AddCheck<CpuLaneHealthCheck>("cpu-lane", tags: [TelemetryExtensions.ReadyTag]);
        return builder;
    }
}
