using Fleet.Client.Tls;
using Fleet.ServiceDefaults;
using Fleet.Worker;
using Fleet.Worker.ProcessLane;
using Microsoft.AspNetCore.Builder;

// Started by a worker as a process-lane child: run tasks from standard input, nothing else (no broker, no database).
if (ProcessLaneChild.IsChild)
{
    return await ProcessLaneChild.RunAsync(args);
}

// Settings are read once and validated at start, so files are not watched for changes: the default watch covers the
// working directory and everything below it, and a worker started in a busy directory (the repository, with the local
// PostgreSQL and RabbitMQ data under .fleet/) spent about 1 % of a core on change notifications under load.
var builder = WebApplication.CreateBuilder(["--hostBuilder:reloadConfigOnChange=false", .. args]);

// /metrics, /health and /alive on a small HTTP port. Unless one is configured (ASPNETCORE_URLS, --urls), take a
// free loopback port, so that several workers on one machine never collide; containers set ASPNETCORE_URLS.
if (string.IsNullOrEmpty(builder.Configuration["urls"]))
{
    builder.WebHost.UseUrls("http://127.0.0.1:0");
}

builder.AddServiceDefaults();
builder.AddFleetWorker();
await using var app = builder.Build();
app.MapFleetDefaultEndpoints();
try
{
    await app.StartAsync();
}
catch (FleetTlsException)
{
    // Logged by the check with its reason; a configuration error, not a crash to dump.
    return FleetTlsException.ExitCode;
}
catch (Exception ex) when (app.Lifetime.ApplicationStopping.IsCancellationRequested)
{
    // Stopped while the bus was still connecting (a broker node down at start, retried every few seconds): MassTransit
    // gives up its start with the last connection error and stops the endpoints it had started. The rest of the
    // worker stops as on any stop below (the lanes drain, the heartbeat records "stopped"), instead of the
    // process ending on an unhandled exception with the worker left "running".
    app.Logger.LogWarning("Stopped before the bus had started: {Reason}", ex.Message);
}

// Returns once a stop was asked for (SIGTERM, Ctrl+C, the CPU lane giving up) and every hosted service has stopped.
await app.WaitForShutdownAsync();
return Environment.ExitCode;
