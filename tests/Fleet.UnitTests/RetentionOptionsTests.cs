using Fleet.Api.Retention;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>The <c>Retention</c> section as the API binds and validates it at start; nothing connects.</summary>
public sealed class RetentionOptionsTests
{
    private const string RemoteUnverified = "Host=db.example.internal;Database=fleet;Username=fleet;Password=x";

    [Fact]
    public void Unset_IsOff_AndNeedsNoConnectionString()
    {
        var options = Build([]);

        Assert.Equal((0, 60.0, 5_000, null), (options.KeepDays, options.IntervalMinutes, options.BatchSize, options.ConnectionString));
    }

    [Fact]
    public void KeepDays_TakesItsLoginFromConnectionStrings()
    {
        var options = Build(new() { ["Retention:KeepDays"] = "30", ["ConnectionStrings:fleetdb_retention"] = "Host=127.0.0.1;Username=fleet" });

        Assert.Equal((30, "Host=127.0.0.1;Username=fleet"), (options.KeepDays, options.ConnectionString));
    }

    [Theory]
    [InlineData("Retention:KeepDays", "30", null, "ConnectionStrings:fleetdb_retention")]
    [InlineData("Retention:KeepDays", "30", RemoteUnverified, "SSL Mode")]
    [InlineData("Retention:KeepDays", "-1", null, "KeepDays")]
    [InlineData("Retention:IntervalMinutes", "0", null, "IntervalMinutes")]
    [InlineData("Retention:BatchSize", "0", null, "BatchSize")]
    public void InvalidSettings_FailAtStart_NamingTheSetting(string key, string value, string? connectionString, string named)
    {
        var ex = Assert.Throws<OptionsValidationException>(() => Build(new() { [key] = value, ["ConnectionStrings:fleetdb_retention"] = connectionString }));

        Assert.Contains(named, ex.Message, StringComparison.Ordinal);
    }

    private static RetentionOptions Build(Dictionary<string, string?> settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection().AddSingleton<IConfiguration>(configuration);
        services.AddFleetRetention();
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<RetentionOptions>>().Value;
    }
}
