using Fleet.Tasks;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.Samples.CustomTasks;

public static class CustomTasksServiceCollectionExtensions
{
    /// <summary>Registers this assembly's task types with a Fleet worker.</summary>
    public static IServiceCollection AddCustomTasks(this IServiceCollection services)
    {
        services.AddTaskHandler<WordCountHandler>();
        return services;
    }
}
