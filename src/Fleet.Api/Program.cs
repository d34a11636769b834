using Fleet.Api;
using Fleet.Client.Tls;
using Fleet.ServiceDefaults;

// The content root is the build output (appsettings.json, wwwroot), wherever the process is started from.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.AddServiceDefaults();
builder.AddFleetApi();

var app = builder.Build();
app.UseFleetApi();
app.MapFleetApi();
try
{
    await app.RunAsync();
}
catch (FleetTlsException)
{
    // Logged by the check with its reason; a configuration error, not a crash to dump.
    return FleetTlsException.ExitCode;
}

return Environment.ExitCode;
