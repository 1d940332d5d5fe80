package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"

	"github.com/handoff/handoff/assets"
)

func assetIcon(name string) fyne.Resource {
	data, err := assets.Icons.ReadFile("icons/" + name)
	if err != nil {
		panic("ui: missing icon " + name + ": " + err.Error())
	}
	return fyne.NewStaticResource(name, data)
}

// Icons. The one-colour symbols are recoloured by the theme, so they read
// on light and dark backgrounds alike.
var (
	iconApp       = fyne.NewStaticResource("icon.png", assets.Icon) // windows, tray, notifications
	iconLogo      = assetIcon("handoff.svg")
	deviceSymbol  = assetIcon("device.svg")
	appSymbol     = assetIcon("app.svg")
	iconSend      = theme.NewThemedResource(assetIcon("send.svg"))
	iconBringBack = theme.NewThemedResource(assetIcon("bring-back.svg"))
	iconPair      = theme.NewThemedResource(assetIcon("pair.svg"))

	iconDeviceReady    = theme.NewPrimaryThemedResource(deviceSymbol) // online and paired
	iconDeviceUnpaired = theme.NewThemedResource(deviceSymbol)        // online, not paired
	iconDeviceOffline  = theme.NewDisabledResource(deviceSymbol)
	iconAppTile        = theme.NewThemedResource(appSymbol)
	iconAppRemote      = theme.NewDisabledResource(appSymbol)
)
