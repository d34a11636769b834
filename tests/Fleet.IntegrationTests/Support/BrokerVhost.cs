using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// A virtual host of its own on the run's broker, for a test that changes the lanes' queue type: the other tests keep
/// their classic lanes in vhost <c>fleet</c>. The broker administrator gets every right on it; deleted at dispose.
/// </summary>
public sealed class BrokerVhost : IAsyncDisposable
{
    private readonly HttpClient _management;

    private BrokerVhost(HttpClient management, string name, string amqpUri)
    {
        _management = management;
        Name = name;
        AmqpUri = amqpUri;
    }

    public string Name { get; }

    /// <summary>The administrator's AMQP URI with this vhost.</summary>
    public string AmqpUri { get; }

    public static async Task<BrokerVhost> CreateAsync(FleetFixture fleet, string prefix)
    {
        ArgumentNullException.ThrowIfNull(fleet);
        var management = fleet.Servers.CreateRabbitMqManagementClient();
        var name = $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 9)];
        var admin = fleet.Servers.RabbitMqUri;
        var user = Uri.UnescapeDataString(admin.UserInfo.Split(':')[0]);
        (await management.PutAsJsonAsync($"api/vhosts/{name}", new { })).EnsureSuccessStatusCode();
        (await management.PutAsJsonAsync($"api/permissions/{name}/{Uri.EscapeDataString(user)}", new { configure = ".*", write = ".*", read = ".*" })).EnsureSuccessStatusCode();
        var uri = new UriBuilder(admin) { Path = "/" + name }.Uri.ToString();
        return new BrokerVhost(management, name, uri);
    }

    /// <summary>Every queue of the vhost: name, type (classic, quorum), messages (as last sampled), consumers.</summary>
    public async Task<List<(string Name, string Type, long Messages)>> QueuesAsync()
    {
        var queues = await _management.GetFromJsonAsync<JsonArray>($"api/queues/{Name}") ?? [];
        return [.. queues.Select(q => ((string)q!["name"]!, (string)q["type"]!, (long?)q["messages"] ?? 0))];
    }

    /// <summary>Runs <c>fleet queues migrate --to TYPE</c> (the CLI's build output) against this vhost; returns its exit code and output.</summary>
    public async Task<(int ExitCode, string Output)> MigrateAsync(string to)
    {
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        var dll = Repository.PathTo("src", "Fleet.Cli", "bin", configuration, "net10.0", "fleet.dll");
        var info = new ProcessStartInfo("dotnet", [dll, "queues", "migrate", "--to", to])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["ConnectionStrings__rabbitmq"] = AmqpUri;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    public async ValueTask DisposeAsync()
    {
        using (await _management.DeleteAsync($"api/vhosts/{Name}"))
        {
        }

        _management.Dispose();
    }
}
