using Fleet.Api;
using Fleet.ServiceDefaults;

// The content root is the build output (appsettings.json, wwwroot), wherever the process is started from.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.AddServiceDefaults();
builder.AddFleetApi();

var app = builder.Build();
app.UseFleetApi();
app.MapFleetApi();
await app.RunAsync();
