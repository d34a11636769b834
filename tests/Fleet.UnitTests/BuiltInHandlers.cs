using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.UnitTests;

/// <summary>The built-in handlers as a worker host would get them: <c>AddFleetTasks()</c> and DI.</summary>
internal static class BuiltInHandlers
{
    private static readonly Lazy<TaskHandlerRegistry> Registry = new(() => CreateProvider().GetRequiredService<TaskHandlerRegistry>());

    public static ITaskHandler Get(string type) =>
        Registry.Value.TryGet(type, out var handler) ? handler : throw new ArgumentException($"Unknown type '{type}'.", nameof(type));

    public static ServiceProvider CreateProvider(Action<HttpGetOptions>? configureHttpGet = null)
    {
        var services = new ServiceCollection();
        services.AddFleetTasks();
        services.Configure<HttpGetOptions>(options =>
        {
            options.AllowedHosts.Add("127.0.0.1");
            configureHttpGet?.Invoke(options);
        });
        return services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
    }
}
