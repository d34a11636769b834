using Fleet.ServiceDefaults;
using Fleet.Worker;
using Microsoft.AspNetCore.Builder;

var builder = WebApplication.CreateBuilder(args);

// /metrics, /health and /alive on a small HTTP port. Unless one is configured (ASPNETCORE_URLS, --urls), take a
// free loopback port, so that several workers on one machine never collide; containers set ASPNETCORE_URLS.
if (string.IsNullOrEmpty(builder.Configuration["urls"]))
{
    builder.WebHost.UseUrls("http://127.0.0.1:0");
}

builder.AddServiceDefaults();
builder.AddFleetWorker();
var app = builder.Build();
app.MapFleetDefaultEndpoints();
await app.RunAsync();
