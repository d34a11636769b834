using System.Net;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>The API rides out broker and database restarts by itself: after each, submits and reads work again.</summary>
public sealed class ApiOutageTests(FleetFixture fleet) : ApiTest(fleet)
{
    [Fact]
    public async Task AfterRabbitMqAndPostgresRestarts_TheApiAcceptsAndServesTasksAgain()
    {
        var before = await SubmitAsync("sieve", """{"limit": 1000}""");
        await WaitForFinalAsync([before]);

        await Fleet.Servers.RestartRabbitMqAsync();
        var afterBroker = await SubmitEventuallyAsync();

        await Fleet.Servers.StopPostgresAsync();
        await Fleet.Servers.StartPostgresAsync();
        await Fleet.ReconnectAfterDatabaseRestartAsync();
        var afterDatabase = await SubmitEventuallyAsync();

        await WaitForFinalAsync([before, afterBroker, afterDatabase], TimeSpan.FromMinutes(2));
        using var read = await Http.GetAsync($"tasks/{afterDatabase}");
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        Assert.Equal("succeeded", (string?)(await ReadJsonAsync(read))["status"]);
    }

    /// <summary>POST /tasks until it is accepted (the first calls may meet a connection still reconnecting).</summary>
    private async Task<Guid> SubmitEventuallyAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            using var response = await Http.PostAsync("tasks", Json("""{"type": "sieve", "payload": {"limit": 1000}}"""));
            if (response.StatusCode == HttpStatusCode.Accepted)
            {
                return (Guid)(await ReadJsonAsync(response))["id"]!;
            }

            Assert.True(DateTime.UtcNow < deadline, $"the API still answers {(int)response.StatusCode} a minute after the restart");
            await Task.Delay(500);
        }
    }
}
