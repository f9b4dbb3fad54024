using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading.Tasks;
using Xunit;

namespace PeerLink.FunctionalTests.Samples;

/// <summary>The README's smart-home scene, run as a user runs it: six processes on loopback, and the story they tell.</summary>
public sealed class SmartHomeSceneTests
{
    [Fact]
    public async Task TheSceneRunsFromMotionToLightToThePhoneAndStopsEveryDevice()
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string root = output.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        string scene = Path.Combine(root, "samples", "SmartHome", "bin", output.Parent!.Name, output.Name, "SmartHome.dll");

        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(scene);
        using Process process = Process.Start(info)!;
        Task<string> text = process.StandardOutput.ReadToEndAsync();
        Task<string> errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        string story = await text;

        Assert.True(process.ExitCode == 0, $"{story}\n{await errors}");
        Assert.Matches(@"sensor +found the hallway light over mDNS", story);
        Assert.Equal(5, Regex.Matches(story, @"sensor +motion -> light on in \d+\.\d+ ms").Count);
        Assert.Matches(@"ac +air conditioner: cool to 22\.0 °C", story);
        Assert.Matches(@"phone +phone: reached the light by PeerId in \d+ ms, relayed through rendezvous node", story);
        Assert.Matches(@"light +light is off \(the phone; ", story);
        Assert.Matches(@"phone +phone: light off; 27\.5 °C at home, air conditioner cool", story);
        Assert.Matches(@"\* motion to light: median \d+\.\d+ ms over 5 events", story);
        Assert.EndsWith("every device stopped", story.TrimEnd(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheQuickStartProgramOfTheReadmeRuns()
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string root = output.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        string program = Path.Combine(root, "docs", "snippets", "QuickStart", "bin", output.Parent!.Name, output.Name, "QuickStart.dll");

        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(program);
        using Process process = Process.Start(info)!;
        Task<string> text = process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));

        Assert.True(process.ExitCode == 0, await process.StandardError.ReadToEndAsync());
        Assert.Matches(@"^light [a-z2-7]{10} <- [a-z2-7]{10}: Switch \{ On = True, Brightness = 80 \}$", (await text).Trim());
    }
}
