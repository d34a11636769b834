using System.Net.Http.Json;
using System.Security.Cryptography;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// A retry the broker refuses (here: the worker's RabbitMQ user may not declare the retry delay queues, a real
/// misconfiguration) must not fault the failed task's message into <c>_error</c>: the task stays queued, for the
/// reconciler, and the failure is logged and counted.
/// </summary>
public sealed class RetryPublishFailureTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    private const string User = "fleet-no-retries";

    [Fact]
    public async Task ARetryTheBrokerRefuses_IsAcknowledged_AndLeavesTheTaskQueued_NotTheMessageInTheErrorQueue()
    {
        var password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        var vhost = Uri.EscapeDataString(RabbitMqAddress.Parse(Fleet.AmqpUri).VirtualHost);
        using var management = Fleet.Servers.CreateRabbitMqManagementClient();
        (await management.PutAsJsonAsync($"api/users/{User}", new { password, tags = "" })).EnsureSuccessStatusCode();
        try
        {
            // Everything a worker needs, except configuring (declaring) the fleet-cpu.retry.* and fleet-io.retry.* queues.
            (await management.PutAsJsonAsync($"api/permissions/{vhost}/{User}",
                new { configure = @"^(?!fleet-(cpu|io)\.retry\.).*", write = ".*", read = ".*" })).EnsureSuccessStatusCode();
            var settings = Fleet.WorkerSettings("no-retries", cpuConcurrency: 1);
            settings["ConnectionStrings:rabbitmq"] = new UriBuilder(Fleet.AmqpUri) { UserName = User, Password = password }.Uri.ToString();
            var port = ProcessTools.GetFreeLoopbackPort();
            settings["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
            var id = await Fleet.Client.SubmitAsync(
                TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 1 }) with { MaxAttempts = 3 });

            await using (var worker = WorkerProcess.Start(settings))
            {
                Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
                    "SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id AND outcome = 'failed'", ("id", id)) == 1), "the first attempt never failed");
                Assert.True(await EventuallyAsync(() => Task.FromResult(worker.Output.Contains("was not scheduled", StringComparison.Ordinal)), TimeSpan.FromSeconds(20)),
                    $"the refused retry was not logged:\n{worker.Output}");
                using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
                Assert.True(await EventuallyAsync(async () => PrometheusText.Sum(await http.GetStringAsync("/metrics"),
                    "fleet_task_retry_publish_failures_total", "queue=\"fleet-io\"") == 1, TimeSpan.FromSeconds(10)), "the refused retry was not counted");

                // The acknowledgement follows the log line at once; a message still unacknowledged when the worker is
                // killed would go back to fleet-io and be seen below.
                await Task.Delay(TimeSpan.FromSeconds(2));
                output.WriteLine(string.Join('\n', worker.Output.Split('\n').Where(l => l.Contains("not scheduled", StringComparison.Ordinal))));
                await worker.KillAsync();
            }

            var info = await GetTaskAsync(id);
            Assert.Equal(("queued", 1), (info!.Status, info.Attempts));
            Assert.Equal(0u, await QueueMessageCountAsync("fleet-io_error"));
            Assert.Equal(0u, await QueueMessageCountAsync("fleet-io"));
        }
        finally
        {
            await management.DeleteAsync($"api/users/{User}");
        }
    }
}
