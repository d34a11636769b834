using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Microsoft.Playwright;

namespace Fleet.IntegrationTests;

/// <summary>
/// The dashboard's task view, in Debian's headless Chromium, shows a running task's progress as its handler reports
/// it: <c>heat</c> in the fixture's worker, through PostgreSQL and the real API, to a progress bar with its note.
/// </summary>
public sealed class DashboardProgressTests(FleetFixture fleet) : FleetTest(fleet)
{
    private static readonly TimeSpan PageWait = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task TaskView_ShowsARunningTasksProgressBarAndNote()
    {
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("heat", new { n = 512, steps = 100_000, seed = 2 }));
        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();

        // Signed in as an operator does: the page asks for the read key, then shows the task of its address.
        await page.GotoAsync($"{api.BaseAddress}#task={id}");
        var form = page.Locator("#key-form");
        await Assertions.Expect(form).ToBeVisibleAsync(new() { Timeout = Ms(PageWait) });
        await page.Locator("#key-input").FillAsync(ApiHost.ReadKey);
        await page.GetByRole(AriaRole.Button, new() { Name = "Use key", Exact = true }).ClickAsync();
        await Assertions.Expect(form).ToBeHiddenAsync(new() { Timeout = Ms(PageWait) });
        lock (errors)
        {
            // The browser logs each read refused before the key as a console error: those, and only those, are expected.
            Assert.All(errors, e => Assert.Contains("401", e, StringComparison.Ordinal));
            errors.Clear();
        }

        // The view refreshes every 2 s while the task is open; the worker writes its report about once a second.
        var bar = page.Locator($"#lookup-result article[data-task=\"{id}\"] .progress progress");
        await Assertions.Expect(bar).ToBeVisibleAsync(new() { Timeout = Ms(PageWait) });
        var value = double.Parse(await bar.GetAttributeAsync("value") ?? "", System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(value, 0.01, 1);
        await Assertions.Expect(page.Locator($"#lookup-result article[data-task=\"{id}\"] .progress"))
            .ToContainTextAsync(new System.Text.RegularExpressions.Regex(@"\d+% · step \d+ of 100000"));
        lock (errors)
        {
            Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
        }

        // Not left running into the next test.
        using var admin = api.CreateClient(ApiHost.AdminKey);
        using var cancel = await admin.PostAsync(new Uri($"tasks/{id}/cancel", UriKind.Relative), null);
        await WaitForFinalAsync([id]);
    }

    private static float Ms(TimeSpan span) => (float)span.TotalMilliseconds;
}
