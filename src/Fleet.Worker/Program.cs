using Fleet.ServiceDefaults;
using Fleet.Worker;
using Microsoft.Extensions.Hosting;

var builder = Host.CreateApplicationBuilder(args);
builder.AddServiceDefaults();
builder.AddFleetWorker();
await builder.Build().RunAsync();
